"""Spark job entry points: ``./submit.sh <stage>`` runs ``jobs/<stage>.py`` through spark-submit."""
