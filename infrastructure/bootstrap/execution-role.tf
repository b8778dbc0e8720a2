# One execution role per function. They live here, not in the application
# root, because whoever can change a role's trust or permissions and pass it
# to a function can run code with those permissions: CI may only pass these
# exact roles to Lambda (ci-policy.tf), and only an administrator's bootstrap
# apply changes what they may do. One role per function, never a shared one,
# so each function may write its own log group and no other.
data "aws_iam_policy_document" "execution_assume" {
  statement {
    sid     = "LambdaAssumes"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    # No aws:SourceAccount / aws:SourceArn condition: a role can only be
    # passed within its own account (iam:PassRole), and whether Lambda sets
    # those keys when it assumes an execution role cannot be checked against
    # the emulator; a wrong guess would stop the function from starting.
  }
}

resource "aws_iam_role" "execution" {
  for_each = local.functions

  name               = each.value.execution_role_name
  description        = "Execution role of the ${each.value.function_name} function (may only write its own log group)"
  assume_role_policy = data.aws_iam_policy_document.execution_assume.json
}

# Scoped to the function's own log group, rather than the managed
# AWSLambdaBasicExecutionRole, which may write to every log group in the
# account. The application root creates the group (with its retention)
# before the function, so logs:CreateLogGroup is not granted.
data "aws_iam_policy_document" "execution" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [each.value.log_streams_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.functions

  name   = "logs"
  role   = aws_iam_role.execution[each.key].id
  policy = data.aws_iam_policy_document.execution[each.key].json
}
