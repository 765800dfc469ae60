from vigil.cli.main import main

main()
