# Inputs of the ddb2es stream handler module. Required: table_stream_arn, domain_arn, search_url.

variable "table_stream_arn" {
  description = "The table's DynamoDB stream ARN (the stream must use NEW_AND_OLD_IMAGES)."
  type        = string
  validation {
    condition     = can(regex(":table/[^/]+/stream/", var.table_stream_arn))
    error_message = "table_stream_arn must be a DynamoDB stream ARN (...:table/NAME/stream/LABEL)."
  }
}

variable "domain_arn" {
  description = "ARN of the OpenSearch Service / Elasticsearch domain (arn:aws:es:REGION:ACCOUNT:domain/NAME)."
  type        = string
}

variable "search_url" {
  description = "The domain endpoint URL, e.g. https://search-xxx.eu-west-1.es.amazonaws.com (DDB2ES_ES_URL)."
  type        = string
}

variable "function_name" {
  description = "Name of the Lambda function (also names the role, queues and alarms)."
  type        = string
  default     = "ddb2es-stream"
}

variable "zip_path" {
  description = "The zip built by `make lambda-zip`."
  type        = string
  default     = "../../build/ddb2es-lambda.zip"
}

variable "index_prefix" {
  description = "Prefix of every index name (DDB2ES_INDEX_PREFIX); the role may create only indices with it."
  type        = string
  default     = ""
}

variable "deployment" {
  description = "Deployment name whose ownership mark new indices get (DDB2ES_DEPLOYMENT); same as the CLI's [defaults] deployment. Empty: derived from the prefix."
  type        = string
  default     = ""
}

variable "type_attribute" {
  description = "Attribute that names the index (DDB2ES_TYPE_ATTRIBUTE)."
  type        = string
  default     = "TYPE"
}

variable "default_type" {
  description = "Index for items without a string type (DDB2ES_DEFAULT_TYPE)."
  type        = string
  default     = "default"
}

variable "search_aws_service" {
  description = "SigV4 service name: es (domains) or aoss (OpenSearch Serverless)."
  type        = string
  default     = "es"
}

variable "log_level" {
  description = "Level of the handler's JSON log lines (DDB2ES_LOG_LEVEL): DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the handler's metrics (POWERTOOLS_METRICS_NAMESPACE)."
  type        = string
  default     = "ddb2es"
}

variable "runtime" {
  description = "Lambda Python runtime (3.11 or newer)."
  type        = string
  default     = "python3.12"
}

variable "architecture" {
  description = "x86_64 or arm64 (the zip is pure Python: both work)."
  type        = string
  default     = "arm64"
}

variable "memory_size" {
  type    = number
  default = 512
}

variable "timeout" {
  description = "Seconds; well above the client's 30 s request timeout."
  type        = number
  default     = 120
}

variable "batch_size" {
  description = "Records per invocation (one bulk request per invocation)."
  type        = number
  default     = 500
}

variable "maximum_batching_window_in_seconds" {
  type    = number
  default = 2
}

variable "starting_position" {
  description = "TRIM_HORIZON for a new mapping (then `ddb2es reindex` once), or LATEST."
  type        = string
  default     = "TRIM_HORIZON"
}

variable "log_retention_days" {
  type    = number
  default = 30
}

variable "lag_alarm_threshold_seconds" {
  description = "Alarm when the replication lag (ReplicationLag, maximum) stays above this."
  type        = number
  default     = 300
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or clears (e.g. an SNS topic)."
  type        = list(string)
  default     = []
}

variable "tags" {
  type    = map(string)
  default = {}
}
