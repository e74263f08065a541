"""``python -m clean_deploy`` runs the CLI."""
from clean_deploy.cli.main import main

main()
