"""ddb2es: keep Elasticsearch/OpenSearch indices true to the DynamoDB tables they are built from."""

__version__ = "0.1.0"
