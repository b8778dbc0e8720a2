# GitHub Actions OIDC: the account's identity provider and the environment's
# deploy role, which carries the CI policy (ci-policy.tf). The role exists
# only when github_repository is set; the local environment has none.
locals {
  create_deploy_role = var.github_repository != null

  # An account has at most one OIDC provider per URL, and its ARN is fully
  # determined by the account and the host, so an existing one is referenced
  # without a lookup.
  github_oidc_provider_arn = (
    var.create_github_oidc_provider
    ? aws_iam_openid_connect_provider.github[0].arn
    : "arn:${local.partition}:iam::${var.account_id}:oidc-provider/${local.github_oidc_host}"
  )
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # No thumbprint_list: IAM trusts GitHub's OIDC endpoint through its own
  # root CA library, and the provider leaves the attribute optional.
}

data "aws_iam_policy_document" "deploy_assume" {
  count = local.create_deploy_role ? 1 : 0

  statement {
    sid     = "GitHubActionsEnvironment"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    # Only jobs that run in the GitHub environment of the same name (where
    # required reviewers and branch rules apply) may deploy; a job on an
    # arbitrary branch or a pull request gets a different `sub`.
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:sub"
      values   = ["repo:${var.github_repository}:environment:${var.environment}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  count = local.create_deploy_role ? 1 : 0

  name                 = local.deploy_role_name
  description          = "Assumed by GitHub Actions (${var.github_repository}, environment ${var.environment}) to deploy ${join(", ", sort([for f in values(var.functions) : f.function_name]))}"
  assume_role_policy   = data.aws_iam_policy_document.deploy_assume[0].json
  max_session_duration = 3600
}

# Inline, so the policy cannot be attached to anything else and lives and
# dies with the role.
resource "aws_iam_role_policy" "deploy_ci" {
  count = local.create_deploy_role ? 1 : 0

  name   = "ci"
  role   = aws_iam_role.deploy[0].id
  policy = data.aws_iam_policy_document.ci.json
}
