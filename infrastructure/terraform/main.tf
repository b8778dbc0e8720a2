# One module instance per function of the environment, keyed by the
# function's stable name in the settings (`[functions.<key>]`). The key is
# part of every state address (module.function["<key>"]...), so renaming a
# key is a move: add a `moved` block (moved.tf) or the function, its
# repository and its log group are destroyed and created again.
module "function" {
  source   = "../modules/function"
  for_each = var.functions

  function_name          = each.value.function_name
  repository_name        = each.value.repository_name
  execution_role_name    = each.value.execution_role_name
  image_uri              = each.value.image_uri
  architecture           = each.value.architecture
  invoke_mode            = each.value.invoke_mode
  memory_size            = each.value.memory_size
  timeout                = each.value.timeout
  log_retention_days     = each.value.log_retention_days
  environment_variables  = each.value.environment_variables
  function_url_auth_type = each.value.function_url_auth_type
  description            = each.value.description
  repository_readers     = each.value.repository_readers
}
