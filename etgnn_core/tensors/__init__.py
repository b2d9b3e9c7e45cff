"""Tensor specs, assembly from edge coefficients, and tensor algebra."""
