"""The data commands as an administrator runs them: import, duplicates, merge."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import clean_env, run


def test_import_duplicates_and_merge(tmp_path: Path) -> None:
    env = clean_env(tmp_path, SEED_DEMO="false", DATA_DIR=str(tmp_path / "data"))
    staff = tmp_path / "staff.csv"
    staff.write_text("email,name,department\nm@corp.example,Мария Менеджер,subscriber_service\n", encoding="utf-8")
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "account,name,phone,manager\n"
        "700001,Сидорова Анна Павловна,+79160007001,m@corp.example\n"
        "700002,,+79160007002,\n"
        "700003,Сидорова Ана Павловна,8 916 000-70-01,\n", encoding="utf-8")
    done = run(["import", "staff", str(staff)], env, tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 created" in done.stdout
    done = run(["import", "customers", str(customers)], env, tmp_path, timeout=300)
    assert done.returncode == 1  # a row was skipped
    assert "line 3: skipped: name is empty" in done.stdout and "2 created" in done.stdout
    again = run(["import", "customers", str(customers)], env, tmp_path, timeout=300)
    assert "0 created" in again.stdout and "2 unchanged" in again.stdout

    listed = run(["customers", "duplicates"], env, tmp_path, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "SURE" in listed.stdout and "1 candidate pairs (1 sure)" in listed.stdout
    merged = run(["customers", "merge", "1", "2"], env, tmp_path, timeout=300)
    assert merged.returncode == 0 and "customer 2 merged into 1" in merged.stdout
    assert "0 candidate pairs" in run(["customers", "duplicates"], env, tmp_path, timeout=300).stdout
    refused = run(["customers", "merge", "1", "2"], env, tmp_path, timeout=300)
    assert refused.returncode == 2 and "already merged" in refused.stderr

    missing = run(["import", "customers", str(tmp_path / "nope.csv")], env, tmp_path, timeout=300)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("id,title\n1,x\n", encoding="utf-8")
    refused = run(["import", "customers", str(bad_header)], env, tmp_path, timeout=300)
    assert refused.returncode == 2 and "missing column" in refused.stderr
