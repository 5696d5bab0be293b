#!/usr/bin/env bash
# SFT -> reward model -> PPO / RLOO / DPO on the bundled sentiment data in chat format, on the
# CPU: the stages of scripts/sentiment_pipeline.sh on conversational versions of its files,
# written into $RUNS/data by this script (with jq) from arcane/data/sentiment (CC BY 4.0, see
# its README):
#
#   reviews_train.jsonl  {"messages": [user, assistant]}: the user asks for a one-sentence
#                        movie review (every other row: one starting with the review's first
#                        four words, as the RL prompts ask), the assistant answers the review
#   pairs_*.jsonl        {"prompt": [user], "chosen": [assistant], "rejected": [assistant]}:
#                        the user asks for a review; chosen = positive, rejected = negative
#   prompts_*.jsonl      {"prompt": [user]}: a review starting with the prompt's four words
#
# The base has no chat template, so `sft` gives it Arcane's ChatML (<|im_start|>, <|im_end|>
# on spare vocabulary rows) and trains LoRA adapters on the assistant turns; `lora merge`
# writes $RUNS/sft with the tokenizer gpt2-chatml, from which the reward model, PPO, RLOO and
# DPO render every prompt and reply with that template. Responses are up to 24 tokens (most
# replies and their <|im_end|>, where sampling stops); DPO runs one epoch (chat sequences are
# about twice as long as the plain ones).
#
# RUNS (default runs/chat-pipeline) and SAMPLES pass through. A pre-trained base from an
# earlier run can be reused: mkdir -p $RUNS && cp -r runs/sentiment/base $RUNS/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "chat_pipeline.sh writes the chat data with jq: install it (apt install jq)" >&2; exit 1; }
RUNS=${RUNS:-runs/chat-pipeline}
SOURCE=arcane/data/sentiment
DATA=$RUNS/data
mkdir -p "$DATA"

ASK='Write a one-sentence movie review.'
# starting WORDS: the user's request for a review that opens with WORDS.
STARTING='"Write a one-sentence movie review starting with \"" + . + "\"."'
user() { echo "[{\"role\": \"user\", \"content\": $1}]"; }

jq -c -s --arg ask "$ASK" "to_entries[] | .value.text as \$t | (\$t | split(\" \")) as \$w
    | (if .key % 2 == 1 and (\$w | length) >= 6
       then (\$w[0:4] | join(\" \") | $STARTING) else \$ask end) as \$q
    | {messages: [{role: \"user\", content: \$q}, {role: \"assistant\", content: \$t}]}" \
    "$SOURCE/reviews_train.jsonl" > "$DATA/reviews_train.jsonl"
for split in train test; do
    jq -c --arg ask "$ASK" "{prompt: $(user '$ask'),
        chosen: [{role: \"assistant\", content: .chosen}],
        rejected: [{role: \"assistant\", content: .rejected}]}" \
        "$SOURCE/pairs_$split.jsonl" > "$DATA/pairs_$split.jsonl"
    jq -c "{prompt: $(user "(.prompt | $STARTING)")}" \
        "$SOURCE/prompts_$split.jsonl" > "$DATA/prompts_$split.jsonl"
done

SFT=sft RUNS=$RUNS DATA=$DATA SFT_MAX_LENGTH=96 RESPONSE_TOKENS=24 DPO_EPOCHS=1 \
    exec scripts/sentiment_pipeline.sh "$@"
