output "function_name" {
  value = aws_lambda_function.handler.function_name
}

output "function_arn" {
  value = aws_lambda_function.handler.arn
}

output "role_arn" {
  description = "Map this role in the domain's access policy or fine-grained access control."
  value       = aws_iam_role.handler.arn
}

output "event_source_mapping_uuid" {
  value = aws_lambda_event_source_mapping.stream.uuid
}

output "permanent_failures_queue_url" {
  description = "Records the cluster refused (DDB2ES_FAILURE_DESTINATION): keys, index, reason."
  value       = aws_sqs_queue.permanent_failures.url
}

output "expired_records_queue_arn" {
  description = "Batches Lambda gave up on (records older than the stream's 24 h): reindex the table."
  value       = aws_sqs_queue.expired_records.arn
}

output "alarm_arns" {
  value = [
    aws_cloudwatch_metric_alarm.replication_lag.arn,
    aws_cloudwatch_metric_alarm.permanent_failures.arn,
    aws_cloudwatch_metric_alarm.iterator_age.arn,
    aws_cloudwatch_metric_alarm.expired_records.arn,
  ]
}
