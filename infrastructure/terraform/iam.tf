# The function's execution role is created by infrastructure/bootstrap, which
# an administrator applies; this root manages no IAM at all. CI may only pass
# this exact role to Lambda (and read it), never create or change a role, so
# it cannot give the function, or itself, more permissions.
#
# Read by name rather than computed, so that a plan on an environment whose
# bootstrap has not run fails at once with the role's name, instead of the
# apply failing later inside CreateFunction.
data "aws_iam_role" "execution" {
  name = module.names.execution_role_name
}
