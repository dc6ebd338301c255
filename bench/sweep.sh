#!/bin/bash
# Recipe variants of multi30k_de_en trained side by side, then scored on test_2016_flickr.
#
#   bash bench/sweep.sh STEPS VARIANTS [DEVICE] [WORK]
#
# VARIANTS holds one "name key=value key=value ..." line per run (bench/sweep_de_en.txt).
# Every run trains recipes/multi30k_de_en.yaml with those --set overrides for STEPS steps
# (the budget schedule decays the lr over the steps, not the clock, so runs that share a
# machine get the same schedule), all at once on DEVICE (default cuda: one GPU holds
# many of these small models; on the 2-core CPU give it one variant at a time). Then each run's
# best.pt translates the test set greedily and with beam 5, and the mean of its last 5
# checkpoints with beam 5. WORK/summary.txt gets a line per run: the validation BLEU it
# kept and the three test BLEU scores.
#
# 2026-11-24 on an H100 (9 variants at once, about 20,000 target tokens/s each, 8,000
# steps in 20 minutes): bash bench/sweep.sh 8000 bench/sweep_de_en.txt
set -u
steps=$1; variants=$2; device=${3:-cuda}; work=${4:-work/sweep}
prep=work/prep-de-en; test=$prep/test_2016_flickr
export OMP_NUM_THREADS=1  # the runs share the CPU cores that feed the GPU
mkdir -p "$work"

run() {  # run NAME SETS...: train, then translate the test set three ways
  local name=$1; shift; local out=$work/$name sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  python -m nmt_cli train recipes/multi30k_de_en.yaml --data $prep --out "$out" --device "$device" \
      --set train.max_time= --set train.max_steps="$steps" --set train.keep_last=5 "${sets[@]}" || return
  python -m nmt_cli translate -m "$out/best.pt" --device "$device" --beam 1 $test.de.txt -o "$out/test.beam1.txt"
  python -m nmt_cli translate -m "$out/best.pt" --device "$device" --beam 5 $test.de.txt -o "$out/test.beam5.txt"
  python -m nmt_cli average "$out" --last 5 -o "$out/average.pt"
  python -m nmt_cli translate -m "$out/average.pt" --device "$device" --beam 5 $test.de.txt -o "$out/test.average5.txt"
}

while read -r name sets; do
  [ -n "$name" ] && [ "${name:0:1}" != "#" ] && run "$name" $sets > "$work/$name.log" 2>&1 &
done < "$variants"
wait

for out in "$work"/*/; do
  name=$(basename "$out")
  echo "$name: $(python -m nmt_cli.train.metrics "$out" 2>&1);" \
       "test BLEU greedy / beam 5 / average-5 beam 5:" \
       $(for f in beam1 beam5 average5; do python -m nmt_cli score -r $test.en.txt "$out/test.$f.txt" -m bleu -f tsv | awk -F'\t' 'NR==2 {print $3}'; done)
done | tee "$work/summary.txt"
