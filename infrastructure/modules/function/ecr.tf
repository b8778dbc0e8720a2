# The function's own repository. Everything an image needs before the
# function exists lives here, so the first deploy can create exactly these
# two resources with a targeted apply (-target on this module instance's
# aws_ecr_repository.this and aws_ecr_lifecycle_policy.this), push the image,
# and then apply the rest.
resource "aws_ecr_repository" "this" {
  name = var.repository_name

  # Deploys pin the function to a digest, so tags are only pointers that the
  # xtask moves (`live`, `previous`, `buildcache`, `latest`); they must be
  # mutable for that.
  image_tag_mutability = "MUTABLE"

  # A repository that still holds images (the live one among them) is never
  # deleted by a destroy; empty it deliberately first.
  force_delete = false

  image_scanning_configuration {
    scan_on_push = true
  }
}

# Lifecycle policy. The JSON lives in lifecycle-policy.json so that
# xtask/tests/lifecycle.rs can evaluate it against image histories; JSON has
# no comments, so the reasoning is here.
#
# Tags the xtask writes: `buildcache` (buildx registry cache), `live` (the
# image the function runs), `previous` (the rollback target), and per build
# `deployed-<UTC time>`, `src-<12 hex>` / `dirty-<12 hex>`, `git-<sha>`,
# `latest`. The first three must never expire: deleting `live` or `previous`
# breaks the running function or the rollback, deleting `buildcache` costs a
# cold build.
#
# ECR semantics relied on (Amazon ECR User Guide, "Lifecycle policy
# evaluation rules" in
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html
# and "Lifecycle policy properties" in
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html):
#   * Rules are applied from the lowest rulePriority to the highest, and "an
#     image that matches the tagging requirements of a rule cannot be expired
#     by a rule with a lower priority". Matching a rule's tag selection is
#     therefore enough to protect an image from every later rule, whether or
#     not that rule expires anything. Rules 1-3 use this: each selects one
#     protected tag and keeps up to 9999 images, a count one tag can never
#     reach, so they expire nothing and shield their image from rules 4-5.
#   * tagPrefixList is an AND: "an image is successfully matched if all of
#     the tags in the tagPrefixList value are matched against any of the
#     image's tags". ["live", "previous"] in one rule would select only an
#     image carrying both tags, so each protected tag gets its own rule (an
#     OR across rules). The prefixes are matched as prefixes, so no other tag
#     scheme may start with `buildcache`, `live` or `previous`; none does.
#   * "The set of rules must contain a unique set of tag prefixes" and "only
#     one rule is allowed to select untagged images".
#   * "A rule with a tagStatus value of any must have the highest value for
#     rulePriority and be evaluated last" - rule 5.
#   * "Rules can never mark images that are marked by higher priority rules,
#     but can still identify them as if they haven't been expired." A later
#     rule still counts images matched by earlier rules (AWS's "Filtering on
#     multiple rules" examples). So rule 5 ranks all images newest first by
#     push time, keeps the first 5 and may expire only the older ones that no
#     earlier rule matched. Protected images and untagged images younger than
#     a day take some of those 5 places: at most 5 images outside the
#     protected three survive, always the newest ones.
#   * imageCountMoreThan: "images are sorted from youngest to oldest based on
#     pushed_at_time and then all images greater than the specified count are
#     expired"; sinceImagePushed expires images pushed more than countNumber
#     countUnit ago. Expiry happens within 24 hours of an image qualifying.
#   * Rule 4 expires untagged images a day after their push. They are mostly
#     cache manifests superseded when `buildcache` moved; the day of grace
#     covers a build that resolved the old cache just before the move.
#     Manifests referenced by an image index are untagged too, but ECR never
#     expires an image still referenced by a manifest list.
resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy     = file("${path.module}/lifecycle-policy.json")
}

# The repository policy lives here, with the repository, and not in the
# account layer (infrastructure/bootstrap), although the promotion grant is
# an account-level decision:
#   * the repository is created by this root at the first deploy, after the
#     bootstrap; a policy in the bootstrap would have nothing to attach to on
#     a fresh account, and two roots would own one repository's settings;
#   * ECR keeps one policy document per repository, and Lambda writes into it
#     itself (CreateFunction / UpdateFunctionCode add a statement granting
#     lambda.amazonaws.com the pull) whenever the policy does not already
#     grant Lambda that pull. A policy managed elsewhere would be rewritten
#     by Lambda and reverted by Terraform on every apply. Managing the whole
#     document here, with Lambda's statement in it, ends the fight: Lambda
#     finds its grant and leaves the policy alone, and an upgraded
#     environment's policy (the one Lambda wrote, for `function:*`) is
#     replaced by this narrower one on its first apply.
# The function is created after this policy (depends_on in lambda.tf), so even
# the first CreateFunction never edits it. Who may read for promotion is still
# decided by the account layer's administrators: the xtask derives
# repository_readers from the settings (`promote_from`), and the reader's own
# account must also allow the reads in its CI policy (bootstrap input
# promotion_source); neither side alone grants anything.
locals {
  # Computed rather than read from aws_lambda_function.this, which depends on
  # this policy.
  function_arn = "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.name}:${aws_ecr_repository.this.registry_id}:function:${var.function_name}"
}

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_iam_policy_document" "repository" {
  # Lambda's own pull (the statement it would otherwise add itself), for this
  # function only: aws:SourceArn is the function, with or without a version
  # or alias qualifier.
  statement {
    sid     = "LambdaECRImageRetrievalPolicy"
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "aws:SourceArn"
      values   = [local.function_arn, "${local.function_arn}:*"]
    }
  }

  # Promotion: the listed roles (deploy roles of other environments) may read
  # images to copy them into their own repositories, and nothing else (no
  # push, no tag, no policy read). The principal is each reader's account,
  # narrowed to the exact roles by aws:PrincipalArn: ECR refuses a policy
  # naming a role that does not exist yet, and a role named directly stops
  # matching when it is recreated (IAM stores its unique id), so this form
  # works whichever account is bootstrapped first.
  dynamic "statement" {
    for_each = length(var.repository_readers) > 0 ? [var.repository_readers] : []

    content {
      sid     = "PromotionReaders"
      actions = ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]

      principals {
        type        = "AWS"
        identifiers = distinct([for arn in statement.value : "arn:${split(":", arn)[1]}:iam::${split(":", arn)[4]}:root"])
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = statement.value
      }
    }
  }
}

resource "aws_ecr_repository_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy     = data.aws_iam_policy_document.repository.json
}
