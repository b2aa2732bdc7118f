import subprocess, sqlite3, os
from test_walkthrough import add_device, kodi_login
def test_dbg(server):
    done = server.cli("device", "add", "Test box")
    open("/tmp/kt-dbg.txt","w").write(done.stdout + "\n=====\n" + done.stderr)
    tok = done.stdout.strip()
    print(kodi_login(server, tok, "1234"))
    print(subprocess.run(["sqlite3", str(server.tmp/"data"/"kt.db"), "select * from devices"], capture_output=True, text=True))
    print(subprocess.run(["find", str(server.tmp)], capture_output=True, text=True).stdout)
    print({k:v for k,v in server.env.items() if k.startswith("ROCKET") or "RUST" in k})
    assert 0
