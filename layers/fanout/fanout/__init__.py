"""journey-fanout's shared package: everything the Lambda functions do, free of Lambda types."""
