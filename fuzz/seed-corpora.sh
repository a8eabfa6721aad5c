#!/usr/bin/env bash
# Seeds fuzz/corpus/ from files committed elsewhere in the repository (corpora are not
# committed). Needs jq and xxd. Run from anywhere; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
core=../pir-core
vectors=$core/test_vectors/mapping_signatures.json
layout=$core/test_vectors/keyword_layout.json

mkdir -p corpus/snapshot_reader corpus/mapping_json corpus/compact_entry corpus/text_parsers \
    corpus/query_and_keys
cp "$core/tests/fixtures/tiny-v1.pirsnap" corpus/snapshot_reader/tiny-v1.pirsnap

i=0
jq -r '.cases[].json_line, .verification_cases[].json_line' "$vectors" | while IFS= read -r line; do
    printf '%s' "$line" > "corpus/mapping_json/vector-$i.json"
    i=$((i + 1))
done
printf '%s' '{"remove":{"cpi":"tel:+14155550100","msp":"chat.example"}}' > corpus/mapping_json/remove.json

i=0
jq -r '.cases[].compact_entry_hex' "$vectors" | while IFS= read -r hex; do
    printf '%s' "$hex" | xxd -r -p > "corpus/compact_entry/vector-$i.bin"
    # The same entry inside a one-entry bucket: count, tag, length, entry.
    len=$(( ${#hex} / 2 ))
    printf '0100%s%02x%02x%s' 0011223344556677 $((len & 255)) $((len >> 8)) "$hex" \
        | xxd -r -p > "corpus/compact_entry/bucket-$i.bin"
    i=$((i + 1))
done

i=0
{ jq -r '.cases[].cpi_input, .cases[].cpi' "$layout"; jq -r '.cases[].input.cpi // empty, .cases[].issuer_public_key_b64url' "$vectors"; } \
    | sort -u | while IFS= read -r text; do
    printf '%s' "$text" > "corpus/text_parsers/seed-$i.txt"
    i=$((i + 1))
done

# One input per mode of query_and_keys (the first byte picks the mode).
for mode in 0 1 2 3 4 5 6 7; do
    printf "\\x$mode%s" 'seed' > "corpus/query_and_keys/mode-$mode.bin"
done
echo "seeded: $(find corpus -type f | wc -l) files in fuzz/corpus/"
