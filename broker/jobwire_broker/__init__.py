"""Jobwire's broker: a gRPC job broker over Redis or Valkey."""
