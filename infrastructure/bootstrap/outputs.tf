output "deploy_role_arn" {
  description = "ARN of the role GitHub Actions assumes (through OIDC) to deploy this environment, or null when github_repository is not set. Set it as the GitHub environment's AWS_DEPLOY_ROLE_ARN variable."
  value       = one(aws_iam_role.deploy[*].arn)
}

output "state_bucket" {
  description = "Name of the S3 bucket holding the environment's Terraform state (the application's and the bootstrap's)."
  value       = aws_s3_bucket.state.bucket
}

output "region" {
  description = "AWS region of the state bucket and the environment."
  value       = var.region
}

output "ci_policy_json" {
  description = "The CI policy as IAM JSON, rendered for auditing (parliament) and review; the deploy role carries exactly this."
  value       = data.aws_iam_policy_document.ci.json
}

output "execution_roles" {
  description = "Per function key: function_arn, the execution role's role_arn (the only roles CI may pass), and policy_json, the role's inline policy as IAM JSON. Computed from variables only, so a saved plan holds them for auditing (parliament and the escalation check)."
  value = {
    for key, f in local.functions : key => {
      function_arn = f.function_arn
      role_arn     = f.execution_role_arn
      policy_json  = data.aws_iam_policy_document.execution[key].json
    }
  }
}
