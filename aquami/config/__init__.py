"""Reading TOML configuration with errors that name the file, the line and the field.

Shared by every part whose configuration a person writes by hand (the gateway, the simulators' rig).
"""
