# The ddb2es stream handler: function, least-privilege role, event source mapping, failure queues
# and alarms. See docs/deploy.md for the walkthrough and what to do when each alarm fires.

locals {
  # ...:table/NAME/stream/LABEL -> NAME: the metrics' TableName dimension
  table_name = split("/", var.table_stream_arn)[1]
  # The handler's metrics are in milliseconds.
  lag_threshold_ms = var.lag_alarm_threshold_seconds * 1000
}

# --- where failures go ------------------------------------------------------------------------

# Records the cluster refused (mapping conflict, invalid index name): the handler sends one
# message per record (keys, index, reason; never the document) and passes over them.
resource "aws_sqs_queue" "permanent_failures" {
  name                      = "${var.function_name}-permanent-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

# The event source mapping's on-failure destination: with unlimited retries it receives only
# batches whose records left the stream (24 h) before they could be applied.
resource "aws_sqs_queue" "expired_records" {
  name                      = "${var.function_name}-expired-records"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

# --- the role -----------------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "handler" {
  name               = "${var.function_name}-role"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "handler" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.handler.arn}:*"]
  }

  # The event source mapping reads the stream with the function's role.
  statement {
    sid = "ReadTheStream"
    actions = [
      "dynamodb:DescribeStream",
      "dynamodb:GetRecords",
      "dynamodb:GetShardIterator",
    ]
    resources = [var.table_stream_arn]
  }

  # ListStreams has no resource type: it can only be granted on "*".
  statement {
    sid       = "ListStreams"
    actions   = ["dynamodb:ListStreams"]
    resources = ["*"]
  }

  # GET / (engine and version, once per cold start) and GET _alias/<prefix>*-rebuilding (a
  # generation `ddb2es reload --strategy blue-green` is loading).
  statement {
    sid       = "SearchRead"
    actions   = ["es:ESHttpGet"]
    resources = ["${var.domain_arn}/", "${var.domain_arn}/_alias/*"]
  }

  # PUT /<index>: creates an index the batch writes to, with the deployment's ownership mark.
  statement {
    sid       = "SearchCreateIndex"
    actions   = ["es:ESHttpPut"]
    resources = ["${var.domain_arn}/${var.index_prefix}*"]
  }

  # POST /_bulk: index and delete documents (deletes go through bulk too: no ESHttpDelete).
  statement {
    sid       = "SearchBulk"
    actions   = ["es:ESHttpPost"]
    resources = ["${var.domain_arn}/_bulk"]
  }

  statement {
    sid       = "FailureQueues"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.permanent_failures.arn, aws_sqs_queue.expired_records.arn]
  }
}

resource "aws_iam_role_policy" "handler" {
  name   = "${var.function_name}-policy"
  role   = aws_iam_role.handler.id
  policy = data.aws_iam_policy_document.handler.json
}

# --- the function -------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "handler" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "handler" {
  function_name    = var.function_name
  role             = aws_iam_role.handler.arn
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  handler          = "ddb2es_cli.stream.lambda_handler"
  runtime          = var.runtime
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.timeout

  environment {
    variables = {
      DDB2ES_ES_URL                = var.search_url
      DDB2ES_ES_AUTH               = "aws-sigv4"
      DDB2ES_ES_AWS_SERVICE        = var.search_aws_service
      DDB2ES_INDEX_PREFIX          = var.index_prefix
      DDB2ES_DEPLOYMENT            = var.deployment
      DDB2ES_TYPE_ATTRIBUTE        = var.type_attribute
      DDB2ES_DEFAULT_TYPE          = var.default_type
      DDB2ES_FAILURE_DESTINATION   = aws_sqs_queue.permanent_failures.url
      DDB2ES_LOG_LEVEL             = var.log_level
      POWERTOOLS_METRICS_NAMESPACE = var.metrics_namespace
    }
  }

  depends_on = [aws_iam_role_policy.handler, aws_cloudwatch_log_group.handler]
  tags       = var.tags
}

resource "aws_lambda_event_source_mapping" "stream" {
  event_source_arn                   = var.table_stream_arn
  function_name                      = aws_lambda_function.handler.arn
  starting_position                  = var.starting_position
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  # The handler names the first record not applied; Lambda retries from there.
  function_response_types = ["ReportBatchItemFailures"]
  # Retry overloads until they apply (the handler reports only retryable failures); a limit
  # would discard updates a busy cluster would have accepted a minute later.
  maximum_retry_attempts         = -1
  maximum_record_age_in_seconds  = -1
  bisect_batch_on_function_error = true

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.expired_records.arn
    }
  }
}

# --- alarms ---------------------------------------------------------------------------------------

# The index is behind the table by more than the threshold for 5 minutes in a row.
resource "aws_cloudwatch_metric_alarm" "replication_lag" {
  alarm_name          = "${var.function_name}-replication-lag"
  alarm_description   = "ddb2es: ${local.table_name} is more than ${var.lag_alarm_threshold_seconds} s behind (see docs/deploy.md, alarms)"
  namespace           = var.metrics_namespace
  metric_name         = "ReplicationLag"
  dimensions          = { TableName = local.table_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = local.lag_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # no invocation: no new records (iterator_age covers a stuck mapping)
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

# The cluster refused a document: it is in the permanent-failures queue and NOT in the index.
resource "aws_cloudwatch_metric_alarm" "permanent_failures" {
  alarm_name          = "${var.function_name}-permanent-failures"
  alarm_description   = "ddb2es: the cluster refused documents of ${local.table_name} (see docs/deploy.md, alarms)"
  namespace           = var.metrics_namespace
  metric_name         = "PermanentFailures"
  dimensions          = { TableName = local.table_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

# Lambda's own view of the lag: rises also when invocations fail before the handler reports
# (timeouts, crashes, a role that cannot read the stream), where ReplicationLag says nothing.
resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  alarm_name          = "${var.function_name}-iterator-age"
  alarm_description   = "ddb2es: the stream of ${local.table_name} is not being consumed (see docs/deploy.md, alarms)"
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = aws_lambda_function.handler.function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = local.lag_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

# Records expired from the stream unapplied: the index misses updates until a reindex.
resource "aws_cloudwatch_metric_alarm" "expired_records" {
  alarm_name          = "${var.function_name}-expired-records"
  alarm_description   = "ddb2es: stream records of ${local.table_name} expired unapplied: run ddb2es reindex (see docs/deploy.md, alarms)"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.expired_records.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}
