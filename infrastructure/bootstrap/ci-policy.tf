# The CI policy: exactly what `cargo xtask image|deploy|rollback` (and a
# promotion) need for this one environment's functions, and the only
# definition of it. The deploy role (github-oidc.tf) carries it; the output `ci_policy_json` renders it for the
# auditors.
#
# Where the actions come from: the SDK calls in xtask/src/aws.rs (ECR
# GetAuthorizationToken, DescribeRepositories, BatchGetImage, PutImage; STS
# GetCallerIdentity needs no permission), the registry protocol that docker
# buildx push/pull speaks to ECR, the image scan gate (StartImageScan,
# DescribeImageScanFindings, DescribeImages), and the API calls that
# terraform (1.11, aws provider 5.100) made against the emulator, recorded
# with TF_LOG=debug, over the whole life of infrastructure/terraform: init,
# the first deploy's targeted ECR apply, create, a no-change plan, updates of
# image, memory, retention and URL auth type (NONE and back), and destroy.
# Update-only actions that path did not exercise (tag changes, scanning
# configuration, tag mutability) are listed where the provider needs them.
#
# Every ARN here is computed from the variables (providers.tf), never read
# from a created resource, so the whole document is known at plan time and
# can be audited from a saved plan before anything is applied.
#
# Scope: every resource is the exact ARN of one of this environment's
# functions (var.functions: its repository, function, log group, execution
# role); another environment's CI cannot touch them, nor anything else in
# the account. Only two actions cannot be scoped to one resource:
# ecr:GetAuthorizationToken (no resource type) and logs:DescribeLogGroups
# (authorized against the account's log-group namespace). With a promotion
# source, CI may also read that environment's exact repositories.
#
# What CI cannot do, on purpose: create, change or delete any IAM role or
# policy. It may only pass the execution role, which the bootstrap owns, to
# Lambda; what the function may do is decided by administrators. It has no
# access to the bootstrap's own state object.
data "aws_iam_policy_document" "ci" {
  # Registry login (docker login with the token). The action has no resource
  # type, so "*" is the only valid resource.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  # Terraform manages each repository (aws_ecr_repository) and its lifecycle
  # policy (aws_ecr_lifecycle_policy), including the first deploy's targeted
  # apply. Tags on create need TagResource. DeleteRepository only removes an
  # empty repository (force_delete = false).
  statement {
    sid = "EcrRepositoryManagement"
    actions = [
      "ecr:CreateRepository",
      "ecr:DescribeRepositories",
      "ecr:DeleteRepository",
      "ecr:PutImageScanningConfiguration",
      "ecr:PutImageTagMutability",
      "ecr:ListTagsForResource",
      "ecr:TagResource",
      "ecr:UntagResource",
      "ecr:GetLifecyclePolicy",
      "ecr:PutLifecyclePolicy",
      "ecr:DeleteLifecyclePolicy",
    ]
    resources = local.repository_arns
  }

  # Terraform manages each repository's policy (aws_ecr_repository_policy in
  # modules/function/ecr.tf): Lambda's pull for that one function, and the
  # reads of the environments that promote from this one. Lambda's
  # CreateFunction/UpdateFunctionCode also read the policy, and would set
  # their own statement where it is missing, with the caller's rights.
  statement {
    sid       = "EcrRepositoryPolicy"
    actions   = ["ecr:GetRepositoryPolicy", "ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"]
    resources = local.repository_arns
  }

  # docker buildx push (layers, manifests, the registry cache) and pulls;
  # the deployment tags (`live`, `previous`, `deployed-...`) are copied with
  # BatchGetImage + PutImage; DescribeImages reads digests and push times.
  statement {
    sid = "EcrPushPullRetag"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
      "ecr:DescribeImages",
    ]
    resources = local.repository_arns
  }

  # Promotion (only with promotion_source): read the source environment's
  # images, to copy them into this environment's own repositories (each
  # function runs only images of its own repository). Read only: no push,
  # no tag, no policy. The source's repository policies must grant the same
  # three reads to this environment's deploy role (its repository_readers).
  dynamic "statement" {
    for_each = length(local.promotion_repository_arns) > 0 ? [local.promotion_repository_arns] : []

    content {
      sid       = "PromotionSourceRead"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages"]
      resources = statement.value
    }
  }

  # The scan gate: start a scan of the pushed digest if none ran, then read
  # its findings before deploying.
  statement {
    sid       = "EcrScanGate"
    actions   = ["ecr:StartImageScan", "ecr:DescribeImageScanFindings"]
    resources = local.repository_arns
  }

  # Terraform manages each function (aws_lambda_function) and its Function
  # URL (aws_lambda_function_url). Reads go through GetFunction (which also
  # returns the tags) and ListVersionsByFunction; the provider reads the
  # code-signing config of zip functions only. No call names a version or
  # alias, so the unqualified ARN is the whole scope. Tags on create and on
  # change need TagResource.
  #
  # UpdateFunctionCode is what a deploy is, and it lets CI run code as a
  # function's execution role (parliament: EditExistingLambdaFunctionWithRole).
  # Each role may only write its own function's log group (execution-role.tf)
  # and only administrators change it, so CI gains nothing through it.
  statement {
    sid = "LambdaFunction"
    actions = [
      "lambda:CreateFunction",
      "lambda:GetFunction",
      "lambda:ListVersionsByFunction",
      "lambda:UpdateFunctionCode",
      "lambda:UpdateFunctionConfiguration",
      "lambda:DeleteFunction",
      "lambda:TagResource",
      "lambda:UntagResource",
      "lambda:CreateFunctionUrlConfig",
      "lambda:GetFunctionUrlConfig",
      "lambda:UpdateFunctionUrlConfig",
      "lambda:DeleteFunctionUrlConfig",
    ]
    resources = local.function_arns
  }

  # Only with allow_public_function_url: the functions' resource policies,
  # which aws_lambda_permission edits when function_url_auth_type is NONE
  # (it grants invocation to everyone). Without it, CI cannot make the
  # function public on its own.
  dynamic "statement" {
    for_each = var.allow_public_function_url ? [local.function_arns] : []

    content {
      sid       = "LambdaPublicUrlPermission"
      actions   = ["lambda:AddPermission", "lambda:GetPolicy", "lambda:RemovePermission"]
      resources = statement.value
    }
  }

  # CreateFunction and UpdateFunctionConfiguration name the execution role;
  # Lambda checks that the caller may pass it. Only the functions' own roles,
  # and only to Lambda.
  statement {
    sid       = "PassExecutionRoleToLambda"
    actions   = ["iam:PassRole"]
    resources = local.execution_role_arns

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["lambda.amazonaws.com"]
    }
  }

  # infrastructure/terraform looks each execution role up by name
  # (data "aws_iam_role"), so a plan fails early and clearly when the
  # bootstrap has not run. Read-only.
  statement {
    sid       = "ReadExecutionRole"
    actions   = ["iam:GetRole"]
    resources = local.execution_role_arns
  }

  # Terraform manages each function's log group (aws_cloudwatch_log_group)
  # with its retention (always set, so DeleteRetentionPolicy is never
  # needed). The tagging APIs take the log-group ARN without the trailing
  # `:*`; CreateLogGroup, DeleteLogGroup and PutRetentionPolicy are
  # authorized against the form with it.
  statement {
    sid = "LogGroup"
    actions = [
      "logs:CreateLogGroup",
      "logs:DeleteLogGroup",
      "logs:PutRetentionPolicy",
      "logs:ListTagsForResource",
      "logs:TagResource",
      "logs:UntagResource",
    ]
    resources = local.log_group_arns
  }

  # How Terraform reads a log group. The action cannot be scoped to one
  # group: AWS authorizes it against `...:log-group::log-stream:`
  # (hashicorp/terraform-provider-aws#8804), which this region-and-account
  # pattern matches. It returns names and settings only, never log events.
  statement {
    sid       = "LogGroupRead"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["${local.logs}:log-group:*"]
  }

  # The xtask's state-bucket check (HeadBucket) and the S3 backend's
  # workspace listing during init and plan (ListObjectsV2 with the prefix
  # `env:/`) both need ListBucket, as HashiCorp documents it: on the bucket,
  # without a condition.
  statement {
    sid       = "StateBucketList"
    actions   = ["s3:ListBucket"]
    resources = [local.state_bucket_arn]
  }

  # The application's state object: read on every plan, written by apply.
  # Never deleted (that happens only with a workspace).
  statement {
    sid       = "StateObject"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.state_bucket_arn}/${local.app_state_key}"]
  }

  # The lock object that `use_lockfile = true` writes next to the state:
  # conditional PutObject to lock, GetObject to read the lock's owner,
  # DeleteObject to unlock.
  statement {
    sid       = "StateLock"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.state_bucket_arn}/${local.app_state_key}.tflock"]
  }
}
