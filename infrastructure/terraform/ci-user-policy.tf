# The CI policy: what `cargo xtask` needs to build, push and deploy this
# environment, and nothing account-wide. It is attached to the GitHub OIDC
# deploy role (iam.tf) and, when ci_user_name is set, to that existing user.
#
# Scope: every project resource is named `<env>-sse-streaming-*`, so each
# statement is limited to that name pattern in this account and region. Only
# ecr:GetAuthorizationToken has Resource "*" (the action has no resource
# type). sts:GetCallerIdentity, which the xtask and the provider call, needs
# no permission at all.
#
# What CI cannot do, on purpose: change this policy, the deploy role, the
# OIDC provider or the user attachment. A principal that could edit its own
# policy could grant itself anything, so those resources are created and
# changed only by an administrator's apply; CI only reads them during plan.
# The remaining trust boundary is the execution role, which CI may manage
# (and pass to Lambda only): whoever controls CI controls what the function
# may do, so keep the execution role's policy small and review its changes.
locals {
  arn_prefix = {
    ecr    = "arn:${local.partition}:ecr:${var.region}:${local.account_id}"
    lambda = "arn:${local.partition}:lambda:${var.region}:${local.account_id}"
    logs   = "arn:${local.partition}:logs:${var.region}:${local.account_id}"
    iam    = "arn:${local.partition}:iam::${local.account_id}"
  }

  project_pattern = "*-sse-streaming-*"

  # The backend `key` the xtask passes; see var.state_key.
  state_key = coalesce(var.state_key, "${var.environment}/sse-streaming.tfstate")
}

data "aws_iam_policy_document" "ci" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrRepository"
    actions = [
      # Repository management by Terraform.
      "ecr:CreateRepository",
      "ecr:DescribeRepositories",
      "ecr:DeleteRepository",
      "ecr:PutImageScanningConfiguration",
      "ecr:PutImageTagMutability",
      "ecr:PutLifecyclePolicy",
      "ecr:GetLifecyclePolicy",
      "ecr:DeleteLifecyclePolicy",
      "ecr:TagResource",
      "ecr:UntagResource",
      "ecr:ListTagsForResource",
      # Lambda adds its pull permission to the repository policy itself when
      # the caller of CreateFunction/UpdateFunctionCode may read and set it.
      "ecr:GetRepositoryPolicy",
      "ecr:SetRepositoryPolicy",
      # Push (docker buildx, including the registry cache) and pull.
      "ecr:BatchCheckLayerAvailability",
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
      # Registry facts, retagging (`live`, `previous`) and cleanup.
      "ecr:DescribeImages",
      "ecr:ListImages",
      "ecr:BatchDeleteImage",
      "ecr:DescribeImageScanFindings",
    ]
    resources = ["${local.arn_prefix.ecr}:repository/${local.project_pattern}"]
  }

  statement {
    sid = "LambdaFunction"
    actions = [
      "lambda:CreateFunction",
      "lambda:GetFunction",
      "lambda:GetFunctionConfiguration",
      "lambda:GetFunctionCodeSigningConfig",
      "lambda:ListVersionsByFunction",
      "lambda:UpdateFunctionCode",
      "lambda:UpdateFunctionConfiguration",
      "lambda:DeleteFunction",
      "lambda:TagResource",
      "lambda:UntagResource",
      "lambda:ListTags",
      "lambda:CreateFunctionUrlConfig",
      "lambda:GetFunctionUrlConfig",
      "lambda:UpdateFunctionUrlConfig",
      "lambda:DeleteFunctionUrlConfig",
      "lambda:AddPermission",
      "lambda:RemovePermission",
      "lambda:GetPolicy",
      # Post-deploy smoke test through an AWS_IAM Function URL, which needs
      # both actions since October 2025.
      "lambda:InvokeFunctionUrl",
      "lambda:InvokeFunction",
    ]
    resources = ["${local.arn_prefix.lambda}:function:${local.project_pattern}"]
  }

  statement {
    sid = "LambdaLogGroup"
    actions = [
      "logs:CreateLogGroup",
      "logs:DeleteLogGroup",
      "logs:PutRetentionPolicy",
      "logs:DeleteRetentionPolicy",
      "logs:TagResource",
      "logs:UntagResource",
      "logs:ListTagsForResource",
      "logs:TagLogGroup",
      "logs:UntagLogGroup",
      "logs:ListTagsLogGroup",
      "logs:DescribeLogStreams",
      "logs:GetLogEvents",
      "logs:FilterLogEvents",
    ]
    resources = [
      "${local.arn_prefix.logs}:log-group:/aws/lambda/${local.project_pattern}",
      "${local.arn_prefix.logs}:log-group:/aws/lambda/${local.project_pattern}:*",
    ]
  }

  # DescribeLogGroups (how Terraform reads a log group) is authorized against
  # the account's log-group namespace, not a single group; it returns names
  # and settings only, no log events.
  statement {
    sid       = "LogGroupRead"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["${local.arn_prefix.logs}:log-group:*"]
  }

  statement {
    sid = "ExecutionRole"
    actions = [
      "iam:CreateRole",
      "iam:GetRole",
      "iam:UpdateRole",
      "iam:UpdateRoleDescription",
      "iam:UpdateAssumeRolePolicy",
      "iam:DeleteRole",
      "iam:TagRole",
      "iam:UntagRole",
      "iam:ListRoleTags",
      "iam:PutRolePolicy",
      "iam:GetRolePolicy",
      "iam:DeleteRolePolicy",
      "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
    ]
    resources = ["${local.arn_prefix.iam}:role/*-sse-streaming-exec"]
  }

  statement {
    sid       = "PassExecutionRoleToLambda"
    actions   = ["iam:PassRole"]
    resources = ["${local.arn_prefix.iam}:role/*-sse-streaming-exec"]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["lambda.amazonaws.com"]
    }
  }

  # Read-only access to the administrator-managed identity resources, so a
  # CI plan can refresh them.
  statement {
    sid = "ReadDeployIdentity"
    actions = [
      "iam:GetRole",
      "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies",
      "iam:ListRoleTags",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:ListPolicyVersions",
      "iam:ListPolicyTags",
      "iam:GetOpenIDConnectProvider",
    ]
    resources = [
      "${local.arn_prefix.iam}:role/${local.project_pattern}",
      "${local.arn_prefix.iam}:policy/${local.project_pattern}",
      "${local.arn_prefix.iam}:oidc-provider/${local.github_oidc_host}",
    ]
  }

  dynamic "statement" {
    for_each = var.ci_user_name == null ? [] : [var.ci_user_name]

    content {
      sid       = "ReadCiUserAttachment"
      actions   = ["iam:ListAttachedUserPolicies"]
      resources = ["${local.arn_prefix.iam}:user/${statement.value}"]
    }
  }

  dynamic "statement" {
    for_each = var.state_bucket == null ? [] : [var.state_bucket]

    content {
      sid       = "StateBucketList"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${local.partition}:s3:::${statement.value}"]
    }
  }

  # The state object and the lock object that `use_lockfile` writes next to
  # it (conditional PutObject, then DeleteObject on unlock).
  dynamic "statement" {
    for_each = var.state_bucket == null ? [] : [var.state_bucket]

    content {
      sid     = "StateObjects"
      actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
      resources = [
        "arn:${local.partition}:s3:::${statement.value}/${local.state_key}",
        "arn:${local.partition}:s3:::${statement.value}/${local.state_key}.tflock",
      ]
    }
  }
}

resource "aws_iam_policy" "ci" {
  name        = "${var.environment}-sse-streaming-ci"
  description = "CI/CD for the ${var.environment} sse-streaming environment: ECR push, Lambda deploy, Terraform state."
  policy      = data.aws_iam_policy_document.ci.json
}

resource "aws_iam_user_policy_attachment" "ci" {
  count = var.ci_user_name == null ? 0 : 1

  user       = var.ci_user_name
  policy_arn = aws_iam_policy.ci.arn
}
