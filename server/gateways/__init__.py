"""The gateways in the field as the collector last heard them: link state and health summary."""
