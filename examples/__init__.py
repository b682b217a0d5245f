"""Runnable CDK apps using the construct library (`cdk.json` runs `python -m examples.app`)."""
