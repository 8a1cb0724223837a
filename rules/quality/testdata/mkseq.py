# Run from the repository root: python3 rules/quality/testdata/mkseq.py rules/quality/testdata/enwiki.reverts.jsonl
# Builds rules/quality/testdata/enwiki.reverts.jsonl from real revert edits
# of the ClueBot NG table (testdata/fixtures/vandalism.cluebotng.dev.csv):
# each revert row (its EditID, title, user, comment, timestamp) becomes the
# revert event, preceded by the edit it reverts (by prev_user, or the user
# an undo names, with the revision it names or the revert's revision.old).
import csv, re, json, sys
csv.field_size_limit(10**9)
rows = list(csv.DictReader(open('testdata/fixtures/vandalism.cluebotng.dev.csv', newline='')))
out = []
def ev(eid, title, user, comment, ts, old, new):
    dt = __import__('datetime').datetime.utcfromtimestamp(ts).strftime('%Y-%m-%dT%H:%M:%SZ')
    t = title.replace('_', ' ')
    return {"meta": {"id": "cbng-%d-%d" % (eid, new), "dt": dt, "domain": "en.wikipedia.org",
                     "uri": "https://en.wikipedia.org/wiki/" + title},
            "type": "edit", "namespace": 0, "title": t, "comment": comment, "timestamp": ts,
            "user": user, "bot": user.startswith("ClueBot"), "minor": False,
            "length": {"old": 1000, "new": 1000}, "revision": {"old": old, "new": new},
            "server_url": "https://en.wikipedia.org", "server_name": "en.wikipedia.org",
            "server_script_path": "/w", "wiki": "enwiki"}
for r in rows:
    c = r['comment']
    if not re.search(r'(?i)(Reverting possible|Reverted edits|Undid revision|^rvv$)', c):
        continue
    eid, ts = int(r['EditID']), int(r['current_timestamp'])
    m = re.search(r'Undid revision (\d+) by \[\[Special:Contributions/([^|]+)\|', c)
    if m:
        rev, who = int(m.group(1)), m.group(2)
    else:
        rev, who = eid - 1, r['prev_user']
        if not who:
            continue
    # an earlier edit by someone else, never reverted
    out.append(ev(eid, r['title'], "Earlier editor", "copyedit", ts - 600, rev - 20, rev - 10))
    if r['title'] == 'Sid_Vicious':  # a rollback of two consecutive edits
        out.append(ev(eid, r['title'], who, "", ts - 120, rev - 10, rev - 5))
        out.append(ev(eid, r['title'], who, "", ts - 60, rev - 5, rev))
    else:
        out.append(ev(eid, r['title'], who, "", ts - 60, rev - 10, rev))
    out.append(ev(eid, r['title'], r['user'], c, ts, rev, eid))
out.sort(key=lambda e: e['timestamp'])
with open(sys.argv[1], 'w') as f:
    for e in out:
        f.write(json.dumps(e, ensure_ascii=False) + "\n")
print(len(out))
