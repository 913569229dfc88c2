"""Settings a deploy still needs, as plan-time preconditions that name them.

A stack synthesized without them (for review) is valid Terraform, but `terraform plan`
(and so `cdktf deploy`) stops before changing anything, with one error per missing setting
naming its variable (FINSIGHT_PROD_CERTIFICATE_ARN ...).
"""

from __future__ import annotations

from cdktn import DataResource, Precondition, TerraformLocal, TerraformResourceLifecycle
from constructs import Construct


class DeployChecks(Construct):
    def __init__(self, scope: Construct, id_: str, missing: dict[str, str]) -> None:
        super().__init__(scope, id_)
        if not missing:
            return
        # Terraform wants a condition to refer to something: the list of missing settings.
        unset = TerraformLocal(self, "missing_settings", sorted(missing))
        DataResource(
            self,
            "settings",
            input={"missing_settings": unset.as_list},
            lifecycle=TerraformResourceLifecycle(
                precondition=[
                    Precondition(
                        condition=f'${{!contains({unset.fqn}, "{field}")}}', error_message=why
                    )
                    for field, why in missing.items()
                ]
            ),
        )
