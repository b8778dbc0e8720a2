locals {
  # The Function URL's invoke mode and the Lambda Web Adapter's come from the
  # one input, so the URL and the adapter cannot disagree (a buffering adapter
  # behind a streaming URL, or the reverse, breaks every response).
  #
  # CORS is applied in one place only, the app (the Function URL has no `cors`
  # block): duplicate Access-Control-Allow-Origin headers make browsers reject
  # the response. The SSE app reads its allowed origins from an ordinary
  # entry of environment_variables, CORS_ALLOW_ORIGINS.
  lambda_environment = merge(
    var.environment_variables,
    { AWS_LWA_INVOKE_MODE = lower(var.invoke_mode) },
  )

  # The repository part of image_uri (everything before `@sha256:`). The
  # conditional keeps the ECR-only targeted apply, where image_uri is null,
  # valid.
  image_repository = var.image_uri == null ? null : split("@", var.image_uri)[0]

  # The provider insists on an image source in the configuration even when it
  # plans a destroy, and a destroy should not need a build artifact. This
  # all-zero digest stands in only while image_uri is null; the first
  # precondition on the function refuses every plan that would create or
  # update the function with it, so it can never reach Lambda.
  image_uri_placeholder = "${aws_ecr_repository.this.repository_url}@sha256:${join("", [for _ in range(64) : "0"])}"
}

# Created before the function so that Lambda never creates it implicitly
# (without retention, and outside Terraform's state).
#
# Its name is fixed (Lambda's default for the function, so no logging_config
# is needed): the execution role's policy in infrastructure/bootstrap allows
# writing to this group only.
resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "this" {
  function_name = var.function_name
  description   = var.description
  role          = data.aws_iam_role.execution.arn

  package_type  = "Image"
  image_uri     = var.image_uri != null ? var.image_uri : local.image_uri_placeholder
  architectures = [var.architecture]

  memory_size = var.memory_size
  timeout     = var.timeout

  environment {
    variables = local.lambda_environment
  }

  # The repository policy first: it already grants Lambda's pull, so
  # CreateFunction finds it and does not edit the policy itself (ecr.tf).
  depends_on = [aws_cloudwatch_log_group.this, aws_ecr_repository_policy.this]

  lifecycle {
    # The entrypoint and command belong to the image (the Dockerfile starts
    # the Lambda Web Adapter), so this module never sets image_config.
    # Ignoring it also keeps the plan empty against moto, which reports an
    # empty ImageConfigResponse (Command = [], EntryPoint = []) for every
    # image function; real Lambda omits the field when nothing is set. Remove
    # this line if image_config is ever managed here.
    ignore_changes = [image_config]

    precondition {
      condition     = var.image_uri != null
      error_message = "image_uri of function ${var.function_name} is required to create or update it. It may be null only for the ECR-only targeted apply of this module's aws_ecr_repository.this and aws_ecr_lifecycle_policy.this, and for destroy; build and push the image, then pass image_uri = <repository-url>@sha256:<digest>."
    }

    precondition {
      condition     = local.image_repository == null || endswith(coalesce(local.image_repository, "-"), "/${aws_ecr_repository.this.name}")
      error_message = "image_uri of function ${var.function_name} must point into its own repository \"${aws_ecr_repository.this.name}\" (its path must end with /${aws_ecr_repository.this.name}@sha256:...); refusing to run another function's or environment's image. Promote an image by copying it into this repository first."
    }
  }
}

resource "aws_lambda_function_url" "this" {
  function_name      = aws_lambda_function.this.function_name
  authorization_type = var.function_url_auth_type
  invoke_mode        = var.invoke_mode
}

# With NONE, Lambda still evaluates the function's resource policy, which
# must grant public lambda:InvokeFunctionUrl.
#
# Since October 2025, newly created function URLs also need
# lambda:InvokeFunction restricted by the condition
# lambda:InvokedViaFunctionUrl = true
# (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). The aws
# provider gained `invoked_via_function_url` for that only in 6.29.0
# (hashicorp/terraform-provider-aws#44829); with 5.x it cannot be expressed,
# and granting lambda:InvokeFunction to "*" without the condition would make
# the function invocable by any AWS account. Until the provider is upgraded,
# a public URL created with this resource alone answers 403 on real AWS
# (unless the account still has AWS's temporary exemption for URLs that
# predate the change). AWS_IAM, the default, does not use this resource.
resource "aws_lambda_permission" "function_url_public" {
  count = var.function_url_auth_type == "NONE" ? 1 : 0

  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}
