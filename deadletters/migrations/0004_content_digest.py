"""Tell dead letters apart by their content too, not only by the offset they were read at.

A broker that came back empty hands out its offsets again: a different
message at a stored topic/partition/offset/group was taken for the one stored
before, and when its `.dlq` publish had been refused too its bytes were kept
nowhere. Existing rows get their digest from their stored key, value and
headers, in batches, before the unique constraint changes.
"""
from django.db import migrations, models

from deadletters.models import content_digest

BATCH = 500


def digest_stored_letters(apps, schema_editor) -> None:
    DeadLetter = apps.get_model("deadletters", "DeadLetter")
    letters = DeadLetter.objects.filter(content_digest="").only("key", "value", "header_names", "header_values")
    changed = []
    for letter in letters.iterator(chunk_size=BATCH):
        headers = list(zip(letter.header_names, letter.header_values, strict=True))
        letter.content_digest = content_digest(letter.key, letter.value, headers)
        changed.append(letter)
        if len(changed) == BATCH:
            DeadLetter.objects.bulk_update(changed, ["content_digest"])
            changed = []
    DeadLetter.objects.bulk_update(changed, ["content_digest"])


class Migration(migrations.Migration):
    dependencies = [
        ("deadletters", "0003_forget_resilience_migrations"),
    ]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="content_digest",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(digest_stored_letters, reverse_code=migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="deadletter", name="dead_letter_unique_delivery"),
        migrations.AddConstraint(
            model_name="deadletter",
            constraint=models.UniqueConstraint(
                fields=("original_topic", "original_partition", "original_offset", "consumer_group", "content_digest"),
                name="dead_letter_unique_message",
            ),
        ),
    ]
