# Sourced by local/serve.sh and local/serve_fleet.sh: the dev key and the curl and openai
# examples a local start prints, for whichever shape is serving on BASE.
#   client_examples BASE DEV_KEY MODEL_NAME
client_examples() {
    local base="$1" key="$2" model="$3"
    cat <<EOT
  curl:
    curl -s $base/v1/chat/completions \\
      -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
      -d '{"model": "$model", "messages": [{"role": "user", "content": "When does the market open?"}], "max_tokens": 32}'

  openai (Python SDK, in .venv):
    OPENAI_API_KEY=$key .venv/bin/python -c '
from openai import OpenAI
client = OpenAI(base_url="$base/v1")
reply = client.chat.completions.create(model="$model", max_tokens=32,
    messages=[{"role": "user", "content": "When does the market open?"}])
print(reply.choices[0].message.content)'
EOT
}
