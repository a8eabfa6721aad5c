#!/usr/bin/env bash
# Seeds fuzz/corpus/ from files committed elsewhere in the repository (corpora are not
# committed). Needs jq and xxd. Run from anywhere; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
core=../pir-core
vectors=$core/test_vectors/mapping_signatures.json
cpis=$core/test_vectors/cpi_normalisation.json
keyword=$core/test_vectors/keyword_v3.json

mkdir -p corpus/snapshot_reader corpus/mapping_json corpus/compact_entry corpus/text_parsers \
    corpus/query_and_keys corpus/ypir_messages
cp "$core/tests/fixtures/tiny-v2.pirsnap" corpus/snapshot_reader/tiny-v2.pirsnap

i=0
{ jq -r '.cases[].json_line, .verification_cases[].json_line' "$vectors"; jq -r '.snapshot.records[].statements[]' "$keyword"; } | while IFS= read -r line; do
    printf '%s' "$line" > "corpus/mapping_json/vector-$i.json"
    i=$((i + 1))
done
printf '%s' '{"remove":{"cpi":"tel:+14155550100","msp":"chat.example"}}' > corpus/mapping_json/remove.json

i=0
# Each compact entry is a one-mapping record of its own snapshot (MSP and issuer at index 0).
jq -r '.cases[].compact_entry_hex' "$vectors" | while IFS= read -r hex; do
    printf '%s' "$hex" | xxd -r -p > "corpus/compact_entry/vector-$i.bin"
    i=$((i + 1))
done
i=0
jq -r '.snapshot.records[].record, .snapshot.records[].bucket_bytes' "$keyword" | while IFS= read -r hex; do
    printf '%s' "$hex" | xxd -r -p > "corpus/compact_entry/keyword-$i.bin"
    i=$((i + 1))
done

i=0
{ jq -r '.cases[].input' "$cpis"; jq -r '.vectors[].cpi' "$keyword"; jq -r '.cases[].input.cpi // empty, .cases[].issuer_public_key_b64url' "$vectors"; } \
    | sort -u | while IFS= read -r text; do
    printf '%s' "$text" > "corpus/text_parsers/seed-$i.txt"
    i=$((i + 1))
done

# One input per mode of query_and_keys (the first byte picks the mode).
for mode in 0 1 2 3 4 5 6 7; do
    printf "\\x$mode%s" 'seed' > "corpus/query_and_keys/mode-$mode.bin"
done
# One input per mode of ypir_messages.
for mode in 0 1 2 3; do
    printf "\\x$mode%s" 'seed' > "corpus/ypir_messages/mode-$mode.bin"
done
echo "seeded: $(find corpus -type f | wc -l) files in fuzz/corpus/"
