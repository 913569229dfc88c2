# Lambda functions: reproducible zip assets under build/lambda/ (the stack builds them too).
.PHONY: lambdas
lambdas: install ## build the Lambda zips (deterministic, size-checked, cached)
	$(BIN)/python -m infra.lambda_package
