"""Privacy audits: membership inference, attribute inference and unlearning."""
