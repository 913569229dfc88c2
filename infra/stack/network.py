"""The VPC: public subnets for the load balancer, private ones for the GPU instances.

Egress choice: one NAT gateway plus a free S3 gateway endpoint. The instances call a
handful of AWS APIs (CloudWatch, Logs, SSM, Secrets Manager, Auto Scaling) with a few
kilobytes a minute; the weights are baked into the image, and only when `model_location`
is set does each instance stream (or copy) them, gigabytes, from S3 at boot. Interface endpoints for
those seven services would cost about 7 x 2 AZs x $7.30 = ~$100 a month; one NAT gateway
costs about $33 a month plus $0.045/GB of the small API traffic, and model bytes, when
fetched, take the S3 endpoint at no charge. The price: API egress depends on the NAT's
AZ, which only matters while that AZ is down, and then its instances are down too.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_aws.default_security_group import DefaultSecurityGroup
from cdktn_provider_aws.eip import Eip
from cdktn_provider_aws.internet_gateway import InternetGateway
from cdktn_provider_aws.nat_gateway import NatGateway
from cdktn_provider_aws.route_table import RouteTable, RouteTableRoute
from cdktn_provider_aws.route_table_association import RouteTableAssociation
from cdktn_provider_aws.subnet import Subnet
from cdktn_provider_aws.vpc import Vpc
from cdktn_provider_aws.vpc_endpoint import VpcEndpoint
from constructs import Construct


@dataclass(frozen=True)
class NetworkProps:
    name: str
    region: str
    availability_zones: tuple[str, ...]
    vpc_cidr: str
    # An existing VPC: when set, nothing is created and these ids are passed through.
    vpc_id: str | None = None
    public_subnet_ids: tuple[str, ...] = ()
    private_subnet_ids: tuple[str, ...] = ()


class Network(Construct):
    vpc_id: str
    public_subnet_ids: list[str]
    private_subnet_ids: list[str]

    def __init__(self, scope: Construct, id_: str, props: NetworkProps) -> None:
        super().__init__(scope, id_)
        if props.vpc_id is not None:
            self.vpc_id = props.vpc_id
            self.public_subnet_ids = list(props.public_subnet_ids)
            self.private_subnet_ids = list(props.private_subnet_ids)
            return
        vpc = Vpc(
            self,
            "vpc",
            cidr_block=props.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": props.name},
        )
        self.vpc_id = vpc.id
        # Nothing may use the default group: it would allow all traffic between members.
        DefaultSecurityGroup(self, "default-sg", vpc_id=vpc.id, ingress=[], egress=[])
        base, prefix = props.vpc_cidr.split("/")
        octets = [int(part) for part in base.split(".")]
        subnet_prefix = int(prefix) + 4

        def cidr(index: int) -> str:
            size = 2 ** (32 - subnet_prefix)
            value = (octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]) + index * size
            parts = [(value >> shift) & 255 for shift in (24, 16, 8, 0)]
            return ".".join(str(part) for part in parts) + f"/{subnet_prefix}"

        def subnets(tier: str, first_block: int) -> list[Subnet]:
            return [
                Subnet(
                    self,
                    f"{tier}-{index}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=cidr(first_block + index),
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{props.name}-{tier}-{zone}"},
                )
                for index, zone in enumerate(props.availability_zones)
            ]

        # The VPC holds 16 blocks: public ones from 0, private from 8 (up to 8 zones each).
        public, private = subnets("public", 0), subnets("private", 8)
        gateway = InternetGateway(self, "igw", vpc_id=vpc.id, tags={"Name": props.name})
        public_routes = RouteTable(
            self,
            "public-routes",
            vpc_id=vpc.id,
            route=[RouteTableRoute(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={"Name": f"{props.name}-public"},
        )
        nat_ip = Eip(self, "nat-ip", domain="vpc", tags={"Name": f"{props.name}-nat"})
        nat = NatGateway(
            self,
            "nat",
            allocation_id=nat_ip.id,
            subnet_id=public[0].id,
            tags={"Name": props.name},
            depends_on=[gateway],
        )
        private_routes = RouteTable(
            self,
            "private-routes",
            vpc_id=vpc.id,
            route=[RouteTableRoute(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
            tags={"Name": f"{props.name}-private"},
        )
        for tier, tier_subnets, routes in (
            ("public", public, public_routes),
            ("private", private, private_routes),
        ):
            for index, subnet in enumerate(tier_subnets):
                RouteTableAssociation(
                    self, f"{tier}-{index}-routes", subnet_id=subnet.id, route_table_id=routes.id
                )
        VpcEndpoint(
            self,
            "s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{props.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_routes.id],
            tags={"Name": f"{props.name}-s3"},
        )
        self.public_subnet_ids = [subnet.id for subnet in public]
        self.private_subnet_ids = [subnet.id for subnet in private]
