"""Infrastructure: the autoscaling policy, the CDK Terrain stack and the `fleet` CLI."""
