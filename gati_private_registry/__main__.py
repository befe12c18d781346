from .cli.admin import main

main()
