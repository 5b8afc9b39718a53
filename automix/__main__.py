from automix.cli import main

main()
