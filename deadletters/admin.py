from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from deadletters.models import DeadLetter
from deadletters.services import dead_letter_value_correct, dead_letters_replay, dead_letters_resolve, preview

# A form field is no place for a value near the broker's 1 MiB limit; such a one is replayed as it is.
MAX_EDITABLE_BYTES = 64 * 1024


def editable_text(letter: DeadLetter) -> str | None:
    """The value as text if it can be edited as text (valid UTF-8 without NUL, not huge); None otherwise."""
    if letter.value is None or len(letter.value) > MAX_EDITABLE_BYTES:
        return None
    try:
        text = bytes(letter.value).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


class DeadLetterForm(forms.ModelForm):
    """Only a text value is editable: bytes that are not text are kept exactly and replayed unchanged."""

    value_text = forms.CharField(label="value", required=False, strip=False, widget=forms.Textarea(attrs={"rows": 12, "cols": 100}))

    class Meta:
        model = DeadLetter
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        text = editable_text(self.instance) if self.instance.pk else None
        field = self.fields["value_text"]
        if text is None:
            field.disabled = True
            field.help_text = (
                "Not editable as text (binary, NUL bytes or over 64 KiB): shown escaped in the preview; "
                "replay sends the original bytes."
            )
        else:
            field.initial = text
            field.help_text = "Correct the value, save, then replay it."


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Dead letters: inspect, correct a text value if need be, replay or resolve."""

    form = DeadLetterForm
    list_display = [
        "id", "original_topic", "original_partition", "original_offset", "key_short", "value_short",
        "exception_class", "attempts", "created_at", "replayed_at", "resolved_at",
    ]  # fmt: skip
    list_filter = ["original_topic", "exception_class", "consumer_group", ("resolved_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["key_preview", "exception_message", "value_preview"]
    date_hierarchy = "created_at"
    actions = ["replay", "resolve"]
    readonly_fields = [
        "original_topic", "original_partition", "original_offset", "original_timestamp", "consumer_group",
        "dead_letter_topic", "key_preview", "value_size", "value_preview_pretty", "headers_pretty", "exception_class",
        "exception_message", "stack_trace_pretty", "attempts", "content_digest", "created_at", "replayed_at",
        "resolved_at",
    ]  # fmt: skip

    @admin.display(description="key")
    def key_short(self, obj: DeadLetter) -> str:
        return obj.key_preview[:40]

    @admin.display(description="value")
    def value_short(self, obj: DeadLetter) -> str:
        return obj.value_preview[:80]

    @admin.display(description="value size (bytes)")
    def value_size(self, obj: DeadLetter) -> int | None:
        return None if obj.value is None else len(obj.value)

    @admin.display(description="value preview")
    def value_preview_pretty(self, obj: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", obj.value_preview)

    @admin.display(description="headers")
    def headers_pretty(self, obj: DeadLetter) -> str:
        return format_html(
            "<pre>{}</pre>", format_html_join("\n", "{}: {}", ((preview(name.encode()), preview(value, limit=200)) for name, value in obj.headers))
        )

    @admin.display(description="stack trace")
    def stack_trace_pretty(self, obj: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", obj.stack_trace)

    def save_model(self, request: HttpRequest, obj: DeadLetter, form: DeadLetterForm, change: bool) -> None:
        if "value_text" in form.changed_data:
            dead_letter_value_correct(letter=obj, value=form.cleaned_data["value_text"])

    @admin.action(description="Replay selected to their original topic (original bytes)", permissions=["change"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        report = dead_letters_replay(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Replayed {report.replayed} dead letter(s).", messages.SUCCESS)
        for refusal in report.refused:
            self.message_user(request, refusal, messages.WARNING)

    @admin.action(description="Mark selected as resolved", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        resolved = dead_letters_resolve(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Resolved {resolved} dead letter(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return False
