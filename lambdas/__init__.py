"""AWS Lambda functions, one folder each, packaged as zip assets by `infra/lambda_package.py`."""
