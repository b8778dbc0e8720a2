output "functions" {
  description = "Per function key: function_name, function_arn, function_url, image_uri (digest-pinned, as Lambda reports it), invoke_mode, architecture, repository_name, repository_url (the base of image_uri), repository_arn, log_group_name and execution_role_arn."
  value = {
    for key, f in module.function : key => {
      function_name      = f.function_name
      function_arn       = f.function_arn
      function_url       = f.function_url
      image_uri          = f.image_uri
      invoke_mode        = f.invoke_mode
      architecture       = f.architecture
      repository_name    = f.repository_name
      repository_url     = f.repository_url
      repository_arn     = f.repository_arn
      log_group_name     = f.log_group_name
      execution_role_arn = f.execution_role_arn
    }
  }
}
