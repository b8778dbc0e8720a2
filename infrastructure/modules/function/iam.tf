# The function's execution role is created by infrastructure/bootstrap, which
# an administrator applies; this module manages no IAM at all. CI may only pass
# these exact roles to Lambda (and read them), never create or change a role,
# so it cannot give a function, or itself, more permissions.
#
# Read by name rather than computed, so that a plan on an environment whose
# bootstrap has not run (or does not know this function yet) fails at once
# with the role's name, instead of the apply failing later inside
# CreateFunction.
data "aws_iam_role" "execution" {
  name = var.execution_role_name
}
