from ddb2es_cli.cli import main

main()
