"""A fake Hugging Face Hub on 127.0.0.1 for scripts/hub_interop.sh (not used by CI).

Serves folders as model repositories with one commit each (`main` -> the commit), answering
what `huggingface_hub` (Python) and Arcane request: repo info, the tree listing, `resolve`
(HEAD and GET; LFS files redirect to a second port's /cdn/<sha256> with X-Linked-Etag /
X-Linked-Size) and ranged CDN downloads. Prints `PORT <n>` once listening; logs each request to stderr.

    python scripts/fake_hub.py --repo ORG/NAME=DIR [--repo ...] [--commit SHA]
"""

import argparse
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")


def load_repos(specs):
    repos = {}
    for spec in specs:
        repo_id, folder = spec.split("=", 1)
        files = {}
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            lfs = name.endswith(LFS_SUFFIXES)
            sha = hashlib.sha256(data).hexdigest()
            etag = sha if lfs else hashlib.sha256(b"blob " + data).hexdigest()[:40]
            files[name] = {"data": data, "lfs": lfs, "etag": etag, "sha256": sha}
        repos[repo_id] = files
    return repos


def make_handler(repos, commit, cdn_port):
    by_sha = {f["sha256"]: f for files in repos.values() for f in files.values() if f["lfs"]}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("fake-hub: %s %s range=%s\n" % (self.command, self.path, self.headers.get("Range")))

        def send(self, status, headers=(), body=b""):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if not any(k.lower() == "content-length" for k, _ in headers):
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.close_connection = True

        def error(self, status, code, message):
            body = json.dumps({"error": message}).encode()
            self.send(status, [("X-Error-Code", code), ("X-Error-Message", message)], body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = urlsplit(self.path).path
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts[0] == "cdn" and len(parts) == 2:
                return self.cdn(parts[1])
            api = parts[:2] == ["api", "models"]
            if api:
                parts = parts[2:]
            if len(parts) < 4:
                return self.error(404, "RepoNotFound", "no route")
            repo_id, kind, rev, rest = "/".join(parts[:2]), parts[2], parts[3], parts[4:]
            files = repos.get(repo_id)
            if files is None:
                return self.error(404, "RepoNotFound", "Repository Not Found")
            if rev not in ("main", commit):
                return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            if api and kind == "revision":
                return self.repo_info(repo_id, files)
            if api and kind == "tree":
                return self.tree(files)
            if not api and kind == "resolve":
                return self.resolve(files, "/".join(rest))
            return self.error(404, "EntryNotFound", "no such route")

        def repo_info(self, repo_id, files):
            info = {
                "_id": "0", "id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": name} for name in files],
            }
            self.send(200, [("Content-Type", "application/json")], json.dumps(info).encode())

        def tree(self, files):
            entries = []
            for name, f in files.items():
                entry = {"type": "file", "oid": f["etag"][:40], "size": len(f["data"]), "path": name}
                if f["lfs"]:
                    entry["lfs"] = {"oid": f["sha256"], "size": len(f["data"]), "pointerSize": 134}
                entries.append(entry)
            self.send(200, [("Content-Type", "application/json")], json.dumps(entries).encode())

        def resolve(self, files, name):
            f = files.get(name)
            if f is None:
                return self.error(404, "EntryNotFound", name + " does not exist")
            if f["lfs"]:
                # The CDN is another origin, as on the real Hub (clients stop their HEAD there).
                return self.send(302, [
                    ("Location", "http://127.0.0.1:%d/cdn/%s" % (cdn_port, f["sha256"])),
                    ("X-Linked-Etag", '"%s"' % f["etag"]),
                    ("X-Linked-Size", str(len(f["data"]))),
                    ("ETag", '"pointer"'),
                    ("X-Repo-Commit", commit),
                ])
            self.send(200, [("ETag", '"%s"' % f["etag"]), ("X-Repo-Commit", commit)], f["data"])

        def cdn(self, sha):
            f = by_sha.get(sha)
            if f is None:
                return self.send(404)
            data = f["data"]
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start, _, end = rng[6:].partition("-")
                start = int(start or 0)
                end = int(end) if end else len(data) - 1
                return self.send(206, [
                    ("Content-Range", "bytes %d-%d/%d" % (start, end, len(data))),
                    ("ETag", '"%s"' % sha),
                ], data[start:end + 1])
            self.send(200, [("ETag", '"%s"' % sha)], data)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", action="append", required=True, help="ORG/NAME=DIR")
    parser.add_argument("--commit", default="c0ffee" + "0" * 34)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    repos = load_repos(args.repo)
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(repos, args.commit, 0))
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    handler = make_handler(repos, args.commit, cdn.server_address[1])
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
