"""The read-only part of the fake cloud: locations, server types and system images (a realistic subset)."""

from __future__ import annotations

_LOCATIONS = [
    (1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", "eu-central"),
    (2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", "eu-central"),
    (3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", "eu-central"),
    (4, "ash", "Ashburn, VA", "US", "Ashburn, VA", "us-east"),
    (5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", "us-west"),
    (6, "sin", "Singapore", "SG", "Singapore", "ap-southeast"),
]
# name, cores, memory GB, disk GB, architecture
_SERVER_TYPES = [
    ("cpx11", 2, 2.0, 40, "x86"), ("cpx21", 3, 4.0, 80, "x86"), ("cpx31", 4, 8.0, 160, "x86"),
    ("cpx41", 8, 16.0, 240, "x86"), ("cpx51", 16, 32.0, 360, "x86"),
    ("cx22", 2, 4.0, 40, "x86"), ("cx32", 4, 8.0, 80, "x86"), ("cx42", 8, 16.0, 160, "x86"),
    ("cax11", 2, 4.0, 40, "arm"), ("cax21", 4, 8.0, 80, "arm"), ("cax31", 8, 16.0, 160, "arm"),
]
_IMAGES = [("debian", "12"), ("debian", "13"), ("ubuntu", "22.04"), ("ubuntu", "24.04")]
CREATED = "2024-01-01T00:00:00+00:00"


def locations() -> list[dict]:
    return [
        {"id": id_, "name": name, "description": description, "country": country, "city": city,
         "latitude": 50.0, "longitude": 12.0, "network_zone": zone}
        for id_, name, description, country, city, zone in _LOCATIONS
    ]


def server_types() -> list[dict]:
    return [
        {"id": index, "name": name, "description": name.upper(), "category": "shared", "cores": cores,
         "memory": memory, "disk": disk, "prices": [], "storage_type": "local", "cpu_type": "shared",
         "architecture": arch, "deprecated": False, "deprecation": None, "included_traffic": 21990232555520,
         "locations": [{"id": loc["id"], "name": loc["name"], "deprecation": None, "available": True,
                        "recommended": True} for loc in locations()]}
        for index, (name, cores, memory, disk, arch) in enumerate(_SERVER_TYPES, start=1)
    ]


def images() -> list[dict]:
    result = []
    for arch_index, arch in enumerate(("x86", "arm")):
        for index, (flavor, version) in enumerate(_IMAGES, start=1):
            result.append({
                "id": 100 * (arch_index + 1) + index, "name": f"{flavor}-{version}", "type": "system",
                "status": "available", "description": f"{flavor.title()} {version}", "image_size": None,
                "disk_size": 5, "created": CREATED, "created_from": None, "bound_to": None,
                "os_flavor": flavor, "os_version": version, "rapid_deploy": True,
                "protection": {"delete": False}, "deprecated": None, "deprecation": None, "labels": {},
                "architecture": arch,
            })
    return result


def find(items: list[dict], id_or_name) -> dict | None:
    for item in items:
        if str(item["id"]) == str(id_or_name) or item["name"] == id_or_name:
            return item
    return None
