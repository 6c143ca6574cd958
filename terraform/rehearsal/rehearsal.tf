# Rehearsal only: scripts/rehearse.sh copies this file and
# rehearsal_override.tf into a temporary copy of the configuration (they are
# never part of the real one) to apply it to moto on loopback.

variable "rehearsal_endpoint" {
  description = "URL of the moto server every AWS client of the provider talks to (http://127.0.0.1:<port>)."
  type        = string

  validation {
    condition     = can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.rehearsal_endpoint))
    error_message = "The rehearsal talks to moto on loopback only: http://127.0.0.1:<port>."
  }
}
