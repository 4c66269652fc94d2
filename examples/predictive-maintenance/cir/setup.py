#!/usr/bin/env python3
"""Creates the predictive-maintenance example's linked databases.

A small subset of a MIMOSA-CRIS-like maintenance database (sites, segments, assets,
measurement locations, work orders, and a view of each asset's last maintenance) and an
ERP-like equipment table, with the records the example's CIR links name:

    python3 examples/predictive-maintenance/cir/setup.py            # SQLite, dda-output/cir/
    python3 examples/predictive-maintenance/cir/setup.py --sqlite DIR
    python3 examples/predictive-maintenance/cir/setup.py \\
        --postgres postgresql://postgres@127.0.0.1:5432/test \\
        --mongodb mongodb://127.0.0.1:27017

With --postgres the maintenance tables go to PostgreSQL (through psql), with --mongodb
the ERP equipment documents go to MongoDB (database dda_example_erp, collection
equipment; needs pymongo): the repositories of cir/servers/ read them there. Running it
again replaces what it made.
"""

import argparse
import os
import sqlite3
import subprocess
import sys

SITES = [("TUR", "Plant Turin", "Acme Machining")]
SEGMENTS = [("TUR-ML2", "TUR", "Machining line 2", "production line")]
# asset_id, segment_id, name, manufacturer, model, maintenance interval (days)
ASSETS = [("SP-3", "TUR-ML2", "Spindle 3", "Kessler", "DMS 090", 90)]
# meas_loc_id, asset_id, name, quantity, unit
MEAS_LOCATIONS = [
    ("SP-3-H1", "SP-3", "Spindle 3 housing, radial", "vibration velocity RMS", "mm/s"),
    ("SP-3-H2", "SP-3", "Spindle 3 housing, axial", "acceleration", "m/s2"),
]
# work_order_id, asset_id, kind, completed
WORK_ORDERS = [
    ("WO-1187", "SP-3", "bearing inspection", "2023-11-28"),
    ("WO-1302", "SP-3", "lubrication", "2024-02-20"),
]
# equipment_no, description, serial_number, vendor, purchase_date, cost_center
EQUIPMENT = [("10004711", "Motor spindle DMS 090", "KS-090-22-4711", "Kessler", "2022-05-16", "CC-4200")]

TABLES = """
CREATE TABLE cris_site (site_id TEXT PRIMARY KEY, name TEXT NOT NULL, enterprise TEXT);
CREATE TABLE cris_segment (segment_id TEXT PRIMARY KEY, site_id TEXT NOT NULL REFERENCES cris_site, name TEXT NOT NULL, segment_type TEXT);
CREATE TABLE cris_asset (asset_id TEXT PRIMARY KEY, segment_id TEXT NOT NULL REFERENCES cris_segment, name TEXT NOT NULL, manufacturer TEXT, model TEXT, maintenance_interval_days INTEGER);
CREATE TABLE cris_meas_location (meas_loc_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL REFERENCES cris_asset, name TEXT NOT NULL, quantity TEXT, unit TEXT);
CREATE TABLE cris_work_order (work_order_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL REFERENCES cris_asset, kind TEXT, completed DATE);
CREATE VIEW cris_asset_maintenance AS
  SELECT asset_id, MAX(completed) AS last_maintenance, COUNT(*) AS work_orders
  FROM cris_work_order GROUP BY asset_id;
"""

DROP = """
DROP VIEW IF EXISTS cris_asset_maintenance;
DROP TABLE IF EXISTS cris_work_order;
DROP TABLE IF EXISTS cris_meas_location;
DROP TABLE IF EXISTS cris_asset;
DROP TABLE IF EXISTS cris_segment;
DROP TABLE IF EXISTS cris_site;
"""

ERP_TABLE = """
DROP TABLE IF EXISTS erp_equipment;
CREATE TABLE erp_equipment (equipment_no TEXT PRIMARY KEY, description TEXT, serial_number TEXT, vendor TEXT, purchase_date DATE, cost_center TEXT);
"""

ROWS = [
    ("cris_site", SITES),
    ("cris_segment", SEGMENTS),
    ("cris_asset", ASSETS),
    ("cris_meas_location", MEAS_LOCATIONS),
    ("cris_work_order", WORK_ORDERS),
]


def literal(v):
    """A value as an SQL literal (the data above is the script's own)."""
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def inserts(rows):
    return "".join(
        f"INSERT INTO {table} VALUES ({', '.join(literal(v) for v in row)});\n"
        for table, values in rows
        for row in values
    )


def sqlite(folder):
    os.makedirs(folder, exist_ok=True)
    for name, script in [
        ("cris.sqlite", DROP + TABLES + inserts(ROWS)),
        ("erp.sqlite", ERP_TABLE + inserts([("erp_equipment", EQUIPMENT)])),
    ]:
        path = os.path.join(folder, name)
        with sqlite3.connect(path) as c:
            c.executescript(script)
        print(f"wrote {path}")


def postgres(url):
    script = "BEGIN;\n" + DROP + TABLES + inserts(ROWS) + "COMMIT;\n"
    subprocess.run(
        ["psql", url, "--quiet", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=script.encode(),
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
        check=True,
    )
    print(f"wrote the maintenance tables to {url.split('@')[-1]}")


def mongodb(url):
    try:
        import pymongo
    except ImportError:
        sys.exit("--mongodb needs pymongo: pip install pymongo")
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
    equipment = client["dda_example_erp"]["equipment"]
    equipment.drop()
    fields = ["description", "serial_number", "vendor", "purchase_date", "cost_center"]
    equipment.insert_many([{"_id": e[0], **dict(zip(fields, e[1:]))} for e in EQUIPMENT])
    print("wrote the ERP equipment to dda_example_erp.equipment")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", metavar="DIR", help="folder of the SQLite files (default: dda-output/cir)")
    parser.add_argument("--postgres", metavar="URL", help="the maintenance tables in this PostgreSQL database")
    parser.add_argument("--mongodb", metavar="URL", help="the ERP equipment in this MongoDB")
    args = parser.parse_args()
    if args.sqlite or not (args.postgres or args.mongodb):
        sqlite(args.sqlite or os.path.join("dda-output", "cir"))
    if args.postgres:
        postgres(args.postgres)
    if args.mongodb:
        mongodb(args.mongodb)


if __name__ == "__main__":
    main()
