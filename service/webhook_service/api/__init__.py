"""gRPC servicers: validate, translate protobuf to domain values, call the store."""
