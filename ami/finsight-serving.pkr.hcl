# The fleet's machine image: an AWS Deep Learning Base GPU AMI (Ubuntu) with vLLM, the
# gateway, the model weights and warm compile caches baked in. Build with `make ami-build`
# (needs AWS credentials); the new AMI id lands in the SSM parameter the stack reads.

packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "Region the AMI is built in and published to."
}

variable "instance_type" {
  type        = string
  default     = "g5.xlarge"
  description = "Build instance: the fleet's type, so that the warm-up compiles for an A10G."
}

variable "source_ami_name" {
  type        = string
  default     = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) *"
  description = "Name filter of the source AMI; the newest match owned by Amazon is used."
}

variable "source_ami_owner" {
  type    = string
  default = "amazon"
}

variable "model_id" {
  type        = string
  default     = "meta-llama/Llama-3.1-8B-Instruct"
  description = "Hugging Face repository of the model (used when model_s3_uri is empty)."
}

variable "model_revision" {
  type        = string
  default     = ""
  description = "Commit (40 hex digits) of model_id to bake; required when model_s3_uri is empty."

  validation {
    # A branch name would make two builds of the same template bake different weights.
    condition     = var.model_revision == "" || can(regex("^[0-9a-f]{40}$", var.model_revision))
    error_message = "The model_revision must be a full commit hash (40 hex digits)."
  }
}

variable "model_s3_uri" {
  type        = string
  default     = ""
  description = "s3://bucket/prefix/ holding the model files; preferred over the Hub when set."
}

variable "fleet_model_location" {
  type        = string
  default     = ""
  description = "The stack's model_location, when it sets one: the warm-up serves from it so that the compile cache matches the fleet's --model."
}

variable "fleet_model_load" {
  type        = string
  default     = "stream"
  description = "The stack's model_load (stream or download), used with fleet_model_location."
}

variable "served_model_name" {
  type        = string
  default     = "finsight-llm"
  description = "Model name clients send; the gateway and vLLM both use it."
}

variable "hf_token" {
  type        = string
  default     = ""
  sensitive   = true
  description = "Token for gated Hub models, passed to the model step only, never baked."
}

variable "vllm_version" {
  type        = string
  default     = "0.33.0"
  description = "Pinned vLLM release (CUDA build) installed in /opt/finsight/vllm."
}

variable "gateway_wheel_dir" {
  type        = string
  default     = "build/ami/wheel"
  description = "Folder with the gateway wheel and constraints.txt, made by `make ami-wheel`."
}

variable "ssm_parameter_name" {
  type        = string
  default     = "/finsight/ami/latest"
  description = "SSM parameter the AMI id is written to; the stack's image setting names it."
}

variable "iam_instance_profile" {
  type        = string
  default     = ""
  description = "Build instance profile; needs s3:GetObject on model_s3_uri when that is set."
}

variable "subnet_id" {
  type    = string
  default = ""
}

locals {
  # Root volume: the DLAMI's CUDA stacks, two venvs, the weights and caches. One file, read
  # by the stack too: its launch template may ask for more, never less than the snapshot.
  root_volume_size_gb = tonumber(trimspace(file("${path.root}/root-volume-gb")))
  timestamp = formatdate("YYYYMMDD-hhmmss", timestamp())
  ami_name  = "finsight-serving-${local.timestamp}"
  model_dir_name = replace(
    var.model_s3_uri != "" ? basename(trimsuffix(var.model_s3_uri, "/")) : basename(var.model_id),
    "/[^A-Za-z0-9._-]/", "-"
  )
  # Each shell step runs as root with the template's variables in its environment.
  execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E bash {{ .Path }}"
}

source "amazon-ebs" "gpu" {
  region               = var.region
  instance_type        = var.instance_type
  ami_name             = local.ami_name
  ami_description      = "finsight-serving: vLLM ${var.vllm_version} + gateway + ${var.model_id}"
  iam_instance_profile = var.iam_instance_profile
  subnet_id            = var.subnet_id
  ssh_username         = "ubuntu"
  # The build copies weights and compiles for minutes; the default 5 min SSH wait is for boot.
  ssh_timeout = "15m"

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = local.root_volume_size_gb
    volume_type           = "gp3"
    throughput            = 1000
    iops                  = 6000
    encrypted             = true
    delete_on_termination = true
  }

  # IMDSv2 only, on the build instance and on every instance launched from the image.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support = "v2.0"

  run_tags = {
    Name    = "finsight-serving-ami-build"
    Project = "finsight-serving"
  }
  tags = {
    Name         = local.ami_name
    Project      = "finsight-serving"
    VllmVersion  = var.vllm_version
    Model        = var.model_s3_uri != "" ? var.model_s3_uri : "${var.model_id}@${var.model_revision}"
    ServedModel  = var.served_model_name
    SourceAmiId  = "{{ .SourceAMI }}"
    SourceAmiRef = "{{ .SourceAMIName }}"
  }
}

build {
  name    = "finsight-serving"
  sources = ["source.amazon-ebs.gpu"]

  # The payload: units, agent config, scripts' shared library, and the gateway wheel.
  provisioner "shell" {
    inline = ["mkdir -p /tmp/finsight-upload/ami /tmp/finsight-upload/wheel"]
  }

  provisioner "file" {
    sources     = ["${path.root}/systemd", "${path.root}/cloudwatch", "${path.root}/files", "${path.root}/scripts", "${path.root}/README.md"]
    destination = "/tmp/finsight-upload/ami/"
  }

  provisioner "file" {
    source      = "${var.gateway_wheel_dir}/"
    destination = "/tmp/finsight-upload/wheel"
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/00-base.sh"
  }

  provisioner "shell" {
    execute_command  = local.execute_command
    script           = "${path.root}/scripts/10-vllm.sh"
    environment_vars = ["VLLM_VERSION=${var.vllm_version}"]
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/20-gateway.sh"
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/30-model.sh"
    environment_vars = [
      "MODEL_ID=${var.model_id}",
      "MODEL_REVISION=${var.model_revision}",
      "MODEL_S3_URI=${var.model_s3_uri}",
      "MODEL_DIR_NAME=${local.model_dir_name}",
      "SERVED_MODEL_NAME=${var.served_model_name}",
      "HF_TOKEN=${var.hf_token}",
    ]
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/40-cloudwatch-agent.sh"
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/50-units.sh"
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/60-warmup.sh"
    environment_vars = [
      "FLEET_MODEL_LOCATION=${var.fleet_model_location}",
      "FLEET_MODEL_LOAD=${var.fleet_model_load}",
    ]
  }

  provisioner "shell" {
    execute_command = local.execute_command
    script          = "${path.root}/scripts/90-cleanup.sh"
  }

  # One chain, in order: the manifest is on disk before the publisher reads it.
  post-processors {
    post-processor "manifest" {
      output     = "build/ami/manifest.json"
      strip_path = true
    }

    post-processor "shell-local" {
      inline = ["bash ${path.root}/scripts/publish-ami-id.sh build/ami/manifest.json ${var.ssm_parameter_name} ${var.region}"]
    }
  }
}
