# Upgrade of environments bootstrapped by the single-function version of this
# root: its one execution role and that role's policy become the instances
# of the function key "sse-streaming" (the settings' key for the existing
# function), with the same role name, so nothing is replaced. The policy
# documents are data sources and need no move. Keep these blocks while any
# environment may still hold the old addresses; elsewhere they do nothing.
moved {
  from = aws_iam_role.execution
  to   = aws_iam_role.execution["sse-streaming"]
}

moved {
  from = aws_iam_role_policy.execution
  to   = aws_iam_role_policy.execution["sse-streaming"]
}
