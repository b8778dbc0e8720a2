output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "Unqualified ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "function_url" {
  description = "HTTPS endpoint of the Function URL."
  value       = aws_lambda_function_url.this.function_url
}

output "image_uri" {
  description = "Digest-pinned image the function runs, as Lambda reports it."
  value       = aws_lambda_function.this.image_uri
}

output "invoke_mode" {
  description = "Invoke mode of the Function URL (`RESPONSE_STREAM` or `BUFFERED`), which the Lambda Web Adapter is also given."
  value       = aws_lambda_function_url.this.invoke_mode
}

output "architecture" {
  description = "Lambda instruction set architecture (`x86_64` or `arm64`)."
  value       = var.architecture
}

output "repository_name" {
  description = "Name of the function's ECR repository."
  value       = aws_ecr_repository.this.name
}

output "repository_url" {
  description = "URL of the ECR repository (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`), the base of image_uri."
  value       = aws_ecr_repository.this.repository_url
}

output "repository_arn" {
  description = "ARN of the ECR repository."
  value       = aws_ecr_repository.this.arn
}

output "log_group_name" {
  description = "Name of the function's CloudWatch log group (`/aws/lambda/<function_name>`)."
  value       = aws_cloudwatch_log_group.this.name
}

output "execution_role_arn" {
  description = "ARN of the function's execution role (created by infrastructure/bootstrap)."
  value       = data.aws_iam_role.execution.arn
}
