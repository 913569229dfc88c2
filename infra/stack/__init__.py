"""The CDK Terrain stack: one construct per concern, wired by `FleetStack`."""
