# The application image: web (gunicorn), Celery worker/beat and Flower all run
# from it (see compose.yaml). Default command: gunicorn on 0.0.0.0:8000.
# It runs the production settings, which refuse to start without
# DJANGO_SECRET_KEY (make one: python -c 'import secrets; print(secrets.token_urlsafe(50))')
# and DJANGO_ALLOWED_HOSTS.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=ecommerce.settings.production

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Drop local-only state that may sit in the build context, create the non-root
# user, collect static files, and prepare the Prometheus multiprocess directory
# and the fake payment provider's ledger directory (named volumes mounted there
# inherit this ownership). collectstatic loads
# the production settings, so it gets a random key that lives only for that
# command and signs nothing; the image itself carries no secret.
RUN rm -rf .venv .run .env staticfiles .pytest_cache \
    && useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /app/staticfiles /tmp/prometheus /var/lib/payment-provider \
    && DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
       DJANGO_ALLOWED_HOSTS=localhost \
       python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R app:app /app/staticfiles /tmp/prometheus /var/lib/payment-provider

USER app

EXPOSE 8000

CMD ["gunicorn", "ecommerce.wsgi:application", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
