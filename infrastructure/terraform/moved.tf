# Upgrade of environments deployed by the single-function version of this
# root, whose resources sat at the top level. Their function becomes the
# instance "sse-streaming" (the settings' key for it) with the same names, so
# the upgrade moves state and renames nothing: its first plan shows these
# moves, the new repository policy (modules/function/ecr.tf) as the only
# addition, and no destroy or replacement.
#
# Keep these blocks while any environment may still hold the old addresses.
# On an environment that never had them (a new one, or one already
# upgraded) they do nothing. The execution role, read by a data source, needs
# no move.
moved {
  from = aws_ecr_repository.this
  to   = module.function["sse-streaming"].aws_ecr_repository.this
}

moved {
  from = aws_ecr_lifecycle_policy.this
  to   = module.function["sse-streaming"].aws_ecr_lifecycle_policy.this
}

moved {
  from = aws_cloudwatch_log_group.lambda
  to   = module.function["sse-streaming"].aws_cloudwatch_log_group.this
}

moved {
  from = aws_lambda_function.this
  to   = module.function["sse-streaming"].aws_lambda_function.this
}

moved {
  from = aws_lambda_function_url.this
  to   = module.function["sse-streaming"].aws_lambda_function_url.this
}

# Counted (present only with function_url_auth_type = "NONE"): the whole
# resource moves, with its instance [0] if there is one.
moved {
  from = aws_lambda_permission.function_url_public
  to   = module.function["sse-streaming"].aws_lambda_permission.function_url_public
}
