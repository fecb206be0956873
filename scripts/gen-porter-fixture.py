#!/usr/bin/env python3
# Run from the repository root (pip install pystemmer). Regenerates tests/fixtures/porter.tsv: SciFact words whose Porter (1980) stem differs from
# the Snowball English (Porter2) one, stemmed by PyStemmer (Snowball's C code).
import json, re, Stemmer
porter, english = Stemmer.Stemmer('porter'), Stemmer.Stemmer('english')
words = set()
for line in open('../shared/datasets/scifact/corpus.jsonl'):
    d = json.loads(line)
    words.update(w for w in re.findall(r'[a-z]+', (d['title'] + ' ' + d['text']).lower()) if len(w) <= 40)
diff = sorted(w for w in words if porter.stemWord(w) != english.stemWord(w))
pick = diff[:: max(1, len(diff) // 400)]
with open('tests/fixtures/porter.tsv', 'w') as f:
    f.write('# word\tporter\tenglish — PyStemmer 3.1.0 (Snowball), SciFact words whose two stems differ\n')
    for w in pick:
        f.write(f'{w}\t{porter.stemWord(w)}\t{english.stemWord(w)}\n')
print(len(words), len(diff), len(pick))
